"""Codec experiment files, the same layout as every trainer's: `EXP/ckpt/step-N.pt` (full training
state for --resume, plain tensors and values: loaded with `weights_only=True`) and
`EXP/model.safetensors` (weights + config, feature dim/type and normalisation in its JSON header:
all that token extraction and decoding need; loading it never runs code). Written atomically."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from polyspeech_cli.codec.config import CodecConfig
from polyspeech_cli.codec.model import SSETCodec
from polyspeech_cli.config import from_dict
from polyspeech_cli.fileio import load_model_file, load_torch_state, save_model_file, save_torch_state

KIND = "sset_codec"
MODEL = "model.safetensors"
_NAME = re.compile(r"^step-(\d+)\.pt$")
_WRITER = "polyspeech train codec"


def list_checkpoints(exp_dir: Path) -> list[Path]:
    """Training checkpoints of `exp_dir`, oldest first."""
    d = Path(exp_dir) / "ckpt"
    found = [(int(m.group(1)), p) for p in d.glob("step-*.pt") if (m := _NAME.match(p.name))] if d.is_dir() else []
    return [p for _, p in sorted(found)]


def save_checkpoint(exp_dir: Path, step: int, state: dict[str, Any], keep_last: int) -> Path:
    """Write `ckpt/step-N.pt` atomically, then delete all but the newest `keep_last`."""
    path = Path(exp_dir) / "ckpt" / f"step-{step:07d}.pt"
    save_torch_state(path, state)
    for old in list_checkpoints(exp_dir)[:-keep_last] if keep_last > 0 else []:
        old.unlink(missing_ok=True)
    return path


def read_checkpoint(path: Path | str) -> dict[str, Any]:
    return load_torch_state(path, KIND, "SSET codec checkpoint", "train one with `polyspeech train codec` or check the path", _WRITER)


def save_model(path: Path, model: SSETCodec, cfg: CodecConfig, meta: dict[str, Any], step: int) -> None:
    """The inference file: weights + everything needed to use them on new features."""
    save_model_file(path, model.state_dict(), {"kind": KIND, "config": dataclasses.asdict(cfg), "step": step, **meta})


def model_path(path: Path | str) -> Path:
    """A codec model file, or an exp dir holding `model.safetensors`."""
    p = Path(path)
    return p / MODEL if p.is_dir() else p


def load_codec(path: Path | str, device: str = "cpu") -> tuple[SSETCodec, dict[str, Any]]:
    """The trained codec (eval mode) and its metadata (feat_dim, feature_type, frame_shift,
    normalization, step); `path` is `EXP/model.safetensors` or EXP."""
    path = model_path(path)
    tensors, meta = load_model_file(path, KIND, "SSET codec model", "train one with `polyspeech train codec` or check the path", _WRITER)
    cfg = from_dict(CodecConfig, meta["config"], where=f"{path}: config")
    model = SSETCodec(int(meta["feat_dim"]), cfg)
    model.load_state_dict(tensors)
    meta = dict(meta, config=cfg)
    return model.to(device).eval(), meta
