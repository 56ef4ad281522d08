"""User-facing errors: one line that names the file and the fix; the CLI turns them into exit code 1."""

from __future__ import annotations

from pathlib import Path


class PolyspeechError(Exception):
    """An error caused by the user's input (a file, an option, a config), not by a bug.

    The message is printed as a single line by the CLI, so it should say *what* is wrong,
    *where* (the file, the line, the utterance id) and *what to do*.
    """


class BadItemError(PolyspeechError):
    """One bad item (an utterance, a file) that `--skip-bad` may drop instead of stopping."""


def require_file(path: Path, what: str, fix: str) -> Path:
    """Return `path` if it is an existing file, else raise a PolyspeechError naming it."""
    path = Path(path)
    if not path.is_file():
        raise PolyspeechError(f"{what} not found: {path} ({fix})")
    return path


def require_dir(path: Path, what: str, fix: str) -> Path:
    """Return `path` if it is an existing directory, else raise a PolyspeechError naming it."""
    path = Path(path)
    if not path.is_dir():
        raise PolyspeechError(f"{what} not found: {path} ({fix})")
    return path
