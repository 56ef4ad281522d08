"""Atomic file writing: every artefact appears whole or not at all.

A stage killed half-way (Ctrl-C, OOM, a bad item) must not leave a truncated manifest that a
re-run would mistake for finished work, so everything is written to a temporary name in the
same directory and renamed into place (rename is atomic on POSIX file systems).
"""

from __future__ import annotations

import contextlib
import os
import re
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


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield an empty temporary directory next to `path`; on success it replaces `path` (a previous
    `path` is removed first), so a decode folder is either the old one or the whole new one."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp.{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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


STATE_HEADER = "polyspeech_state"  # the safetensors header entry of a training checkpoint (a model file's is "polyspeech")
LEGACY_FIX = ("training checkpoints are now ckpt/step-N.safetensors, and .pt (pickle) files are not loaded because loading "
              "them could run code: retrain into a new --exp-dir")


def legacy_checkpoint_error(path: Path | str):
    """The one error for a `.pt` training checkpoint of an older polyspeech (never unpickled)."""
    from polyspeech_cli.errors import PolyspeechError

    return PolyspeechError(f"{path}: a training checkpoint of an older polyspeech (a pickled .pt file); {LEGACY_FIX}")


# ---- the checkpoint directory every trainer writes (no torch: a finished stage's skip check reads it) ----
CHECKPOINT_NAME = re.compile(r"^step-(\d+)\.safetensors$")


def list_checkpoints(exp_dir: Path) -> list[Path]:
    """`EXP/ckpt/step-N.safetensors` training checkpoints, oldest first. An exp dir holding `.pt`
    checkpoints (pickles written by an older polyspeech) is an error naming one: they are never
    loaded, and a new run is not mixed into their exp dir."""
    d = Path(exp_dir) / "ckpt"
    if not d.is_dir():
        return []
    legacy = sorted(p for p in d.glob("*.pt") if p.name.startswith(("step-", "avg-")))
    if legacy:
        raise legacy_checkpoint_error(legacy[-1])
    found = [(int(m.group(1)), p) for p in d.glob("step-*.safetensors") if (m := CHECKPOINT_NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def checkpoint_step(path: Path) -> int:
    """N of a `step-N.safetensors` checkpoint."""
    m = CHECKPOINT_NAME.match(Path(path).name)
    if m is None:
        raise ValueError(f"{path} is not a step-N.safetensors checkpoint")
    return int(m.group(1))


def _encode(value, name: str, tensors: dict) -> object:
    """`value` as JSON, each tensor replaced by {"$tensor": its name in `tensors`} (its dotted path)."""
    import torch

    def sub(key) -> str:
        return f"{name}.{key}" if name else str(key)

    if isinstance(value, torch.Tensor):
        key, i = name or "tensor", 1
        while key in tensors:  # two paths that spell the same (a key holding a dot): keep both
            key, i = f"{name}#{i}", i + 1
        tensors[key] = value.detach().cpu().contiguous().clone()  # clone: no shared storage
        return {"$tensor": key}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        items = [_encode(v, sub(i), tensors) for i, v in enumerate(value)]
        return items if isinstance(value, list) else {"$tuple": items}
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: _encode(v, sub(k), tensors) for k, v in value.items()}
        if not all(k is None or isinstance(k, (bool, int, float, str)) for k in value):
            raise TypeError(f"checkpoint entry {name}: dict keys must be str/int/float/bool/None")
        return {"$items": [[k, _encode(v, sub(k), tensors)] for k, v in value.items()]}
    raise TypeError(f"checkpoint entry {name}: a {type(value).__name__} is not a tensor or plain value")


def _decode(value, tensors: dict) -> object:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if isinstance(value, dict):
        if set(value) == {"$tensor"}:
            return tensors[value["$tensor"]]
        if set(value) == {"$tuple"}:
            return tuple(_decode(v, tensors) for v in value["$tuple"])
        if set(value) == {"$items"}:
            return {k: _decode(v, tensors) for k, v in value["$items"]}
        return {k: _decode(v, tensors) for k, v in value.items()}
    return value


def save_state_file(path: Path | str, state: dict) -> None:
    """Write a training checkpoint as safetensors, atomically: every tensor of `state` (nested
    state dicts, RNG states) in the file under its dotted path (`model.embed.weight`,
    `optimizer.state.0.exp_avg`), everything else (optimizer param groups, scheduler and sampler
    state, counters, config) as JSON in the header, with the tensors' places marked. Only tensors
    and plain values (dict, list, tuple, str, int, float, bool, None) are allowed: a TypeError names
    any other. `load_state_file` gives back the same structure (tuples, int dict keys included)."""
    import json

    from safetensors.torch import save_file

    tensors: dict = {}
    header = json.dumps(_encode(dict(state), "", tensors))  # NaN/inf floats are kept (Python's JSON reads them back)
    with atomic_path(Path(path)) as tmp:
        save_file(tensors, str(tmp), metadata={STATE_HEADER: header})


def load_state_file(path: Path | str, kind: str | None, what: str, missing_fix: str, writer: str) -> dict:
    """A training checkpoint written by `save_state_file` (safetensors + JSON: loading it never runs
    code), tagged `kind` (None: any). A missing, legacy `.pt`, unreadable or foreign file is a
    one-line error naming the file (`what` names the artefact, `writer` the command that makes it)."""
    import json

    from safetensors import safe_open

    from polyspeech_cli.errors import PolyspeechError

    path = Path(path)
    if path.suffix == ".pt" and path.is_file():
        raise legacy_checkpoint_error(path)
    if not path.is_file():
        raise PolyspeechError(f"{what} not found: {path} ({missing_fix})")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = (f.metadata() or {}).get(STATE_HEADER)
            if header is None:
                raise PolyspeechError(f"{path}: not a {what} (no training state in it: a model file? {what}s are written by `{writer}`)")
            state = _decode(json.loads(header), {k: f.get_tensor(k) for k in f.keys()})
    except PolyspeechError:
        raise
    except Exception as e:  # not safetensors (e.g. a pickle), truncated, or a garbled header
        raise PolyspeechError(f"{path}: not a safe {what} (not a safetensors checkpoint written by `{writer}`: "
                              f"{type(e).__name__}); {UNSAFE_FIX}") from e
    if not isinstance(state, dict) or (kind is not None and state.get("kind") != kind):
        raise PolyspeechError(f"{path}: not a {what} (written by `{writer}`)")
    return state


def is_state_file(path: Path | str) -> bool:
    """Whether `path` is a training checkpoint (`save_state_file`), not a model file; reads the header only."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return STATE_HEADER in (f.metadata() or {})
    except Exception:  # unreadable: the loader it goes to says why
        return False


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
        # the header alone opens without torch (numpy): a finished stage's skip check imports no torch
        with safe_open(str(path), framework="pt" if tensors else "numpy", device="cpu") as f:
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
