"""Atomic file writing: every artefact appears whole or not at all.

A stage killed half-way (Ctrl-C, OOM, a bad item) must not leave a truncated manifest that a
re-run would mistake for finished work, so everything is written to a temporary name in the
same directory and renamed into place (rename is atomic on POSIX file systems).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to `path` (same suffixes); rename it to `path` on success.

    The temporary name keeps the full suffix (e.g. `.jsonl.gz`) because writers such as Lhotse
    choose the format from it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".tmp.{path.name.split('.')[0]}.", suffix="".join(path.suffixes), dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():  # mkstemp makes 0600 files; give the artefact the usual umask-based mode
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def load_torch_state(path: Path | str, kind: str, what: str, missing_fix: str, writer: str) -> dict:
    """`torch.load` a checkpoint dict tagged `kind`; a missing, unreadable or foreign file is a
    one-line error naming the file (`what` names the artefact, `writer` the command that makes it)."""
    import torch

    from polyspeech_cli.errors import PolyspeechError

    path = Path(path)
    if not path.is_file():
        raise PolyspeechError(f"{what} not found: {path} ({missing_fix})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise PolyspeechError(f"{path}: not a readable {what} ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or state.get("kind") != kind:
        raise PolyspeechError(f"{path}: not a {what} (written by `{writer}`)")
    return state
