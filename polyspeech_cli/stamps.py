"""The one "finished work" mechanism: a JSON stamp next to a stage's outputs.

A stamp holds a key made of the stage's options and the identity (resolved path, size, mtime) of
every input file. A stage is skipped only when its stamp's key equals the key it would write now
and every output it lists still exists; a changed option or a rewritten input re-runs it. There is
no other way to decide that work is done (no `-nt` tests, no "checkpoint step reached" shortcuts).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from polyspeech_cli.fileio import atomic_write_text


def jsonable(x: Any) -> Any:
    """`x` as plain JSON values (dataclasses as dicts, paths and other objects as strings)."""
    if is_dataclass(x) and not isinstance(x, type):
        x = asdict(x)
    return json.loads(json.dumps(x, default=str, sort_keys=True))


def file_identity(path: Path | str) -> dict[str, Any]:
    """What changes when a file is rewritten: resolved path, size and modification time."""
    p = Path(path)
    st = p.stat()
    return {"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def stamp_key(options: Any, inputs: Iterable[Path | str] = ()) -> dict[str, Any]:
    """The key of a piece of work: its options and the identity of each input file."""
    return {"options": jsonable(options), "inputs": [file_identity(p) for p in inputs]}


def read_stamp(stamp: Path) -> dict[str, Any] | None:
    """The stamp's content, or None when it is missing or unreadable (= not done)."""
    try:
        data = json.loads(Path(stamp).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def is_fresh(stamp: Path, key: dict[str, Any]) -> bool:
    """True when `stamp` records exactly `key` and every output it lists exists."""
    data = read_stamp(stamp)
    if data is None or data.get("key") != jsonable(key):
        return False
    return all(Path(p).exists() for p in data.get("outputs", []))


def write_stamp(stamp: Path, key: dict[str, Any], outputs: Iterable[Path | str] = (), **extra: Any) -> None:
    """Record that the work `key` produced `outputs` (written last, atomically)."""
    data = {"key": jsonable(key), "outputs": [str(Path(p).resolve()) for p in outputs], **jsonable(extra)}
    atomic_write_text(Path(stamp), json.dumps(data, indent=1, sort_keys=True) + "\n")


def changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the leaves that differ between two nested dicts (for "what changed" errors)."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_keys(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out
