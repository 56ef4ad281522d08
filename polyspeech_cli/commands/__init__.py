"""CLI verbs: each module is a thin Typer wrapper over one stage module."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from polyspeech_cli.console import console, err_console  # noqa: F401  (re-exported for the verbs)
from polyspeech_cli.errors import PolyspeechError

F = TypeVar("F", bound=Callable[..., Any])


def cli_command(func: F) -> F:
    """Turn a PolyspeechError raised by a command into one red line on stderr and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PolyspeechError as e:
            err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True, markup=True)
            raise typer.Exit(code=1) from None

    return wrapper  # type: ignore[return-value]


def not_built(verb: str, issue: str) -> None:
    """Say clearly that a verb is planned but not implemented yet (never fake output)."""
    err_console.print(f"[bold yellow]polyspeech {verb}[/] is not built yet ({issue}); nothing was done.")
    raise typer.Exit(code=2)
