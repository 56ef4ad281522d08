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


UNSAFE_FIX = ("re-create it with this version of polyspeech (train again into a new --exp-dir, or delete the file and "
              "re-run the stage that writes it); files from older versions are not converted because loading them could run code")


def save_torch_state(path: Path | str, state: dict) -> None:
    """`torch.save` a training checkpoint atomically. It must hold only tensors and plain
    values (dict, list, tuple, str, int, float, bool, None): `load_torch_state` refuses anything else."""
    import torch

    with atomic_path(Path(path)) as tmp:
        torch.save(state, tmp)


def load_torch_state(path: Path | str, kind: str | None, what: str, missing_fix: str, writer: str) -> dict:
    """Load a training checkpoint (`torch.load(weights_only=True)`: tensors and plain values only,
    never pickled code) tagged `kind` (None: any). A missing, unreadable, foreign or unsafe file is a
    one-line error naming the file (`what` names the artefact, `writer` the command that makes it)."""
    import pickle

    import torch

    from polyspeech_cli.errors import PolyspeechError

    path = Path(path)
    if not path.is_file():
        raise PolyspeechError(f"{what} not found: {path} ({missing_fix})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise PolyspeechError(f"{path}: not a safe checkpoint (it holds pickled code or objects, which are not loaded); "
                              f"{UNSAFE_FIX}") from e
    except Exception as e:
        raise PolyspeechError(f"{path}: not a readable {what} ({type(e).__name__}: {' '.join(str(e).split())[:200]})") from e
    if not isinstance(state, dict) or (kind is not None and state.get("kind") != kind):
        raise PolyspeechError(f"{path}: not a {what} (written by `{writer}`)")
    return state


def save_model_file(path: Path | str, tensors: dict, meta: dict) -> None:
    """Write a final model: `tensors` (name -> tensor) as safetensors, `meta` (plain JSON values:
    kind, config, feature description, step) as JSON in the file's header. Atomic."""
    import json

    from safetensors.torch import save_file

    flat = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}  # clone: no shared storage
    with atomic_path(Path(path)) as tmp:
        save_file(flat, str(tmp), metadata={"polyspeech": json.dumps(meta, sort_keys=True)})


def read_model_meta(path: Path | str, kind: str | None, what: str, missing_fix: str, writer: str) -> dict:
    """The JSON header of a model file written by `save_model_file` (no tensors are read)."""
    return _open_model_file(path, kind, what, missing_fix, writer, tensors=False)[1]


def load_model_file(path: Path | str, kind: str | None, what: str, missing_fix: str, writer: str) -> tuple[dict, dict]:
    """(tensors, meta) of a model file written by `save_model_file`; safetensors never runs code.
    A missing, unreadable or foreign file is a one-line error naming it."""
    return _open_model_file(path, kind, what, missing_fix, writer, tensors=True)


def _open_model_file(path: Path | str, kind: str | None, what: str, missing_fix: str, writer: str, tensors: bool) -> tuple[dict, dict]:
    import json

    from safetensors import safe_open

    from polyspeech_cli.errors import PolyspeechError

    path = Path(path)
    if not path.is_file():
        raise PolyspeechError(f"{what} not found: {path} ({missing_fix})")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            meta = json.loads(header["polyspeech"])
            out = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}
    except Exception as e:  # not safetensors (e.g. a pickle), truncated, or no polyspeech header
        raise PolyspeechError(f"{path}: not a safe {what} (not a safetensors file written by `{writer}`: "
                              f"{type(e).__name__}); {UNSAFE_FIX}") from e
    if not isinstance(meta, dict) or (kind is not None and meta.get("kind") != kind):
        raise PolyspeechError(f"{path}: not a {what} (written by `{writer}`)")
    return out, meta


def nest(tensors: dict, prefix: str) -> dict:
    """The entries of a flat `prefix.name` tensor dict under `prefix`, with the prefix removed."""
    return {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def flatten(**state_dicts: dict | None) -> dict:
    """Several state dicts as one flat tensor dict with `name.` prefixes (None ones left out)."""
    return {f"{name}.{k}": v for name, sd in state_dicts.items() if sd is not None for k, v in sd.items()}
