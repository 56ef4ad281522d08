"""Terminal output for every layer: one stdout console, one stderr console, one progress-bar style.

This is the bottom layer: it imports nothing from the package, so stage modules, model code and
the CLI (`polyspeech_cli.commands`) can all use it without pointing upwards.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console()
err_console = Console(stderr=True)

T = TypeVar("T")


def make_progress() -> Progress:
    """The progress bar of every long loop (on stderr, so stdout stays parseable)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate `items` with a progress bar."""
    items = list(items) if total is None and not hasattr(items, "__len__") else items
    with make_progress() as progress:
        task = progress.add_task(description, total=total if total is not None else len(items))  # type: ignore[arg-type]
        for item in items:
            yield item
            progress.advance(task)
