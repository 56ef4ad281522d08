"""Codec experiment files, the same layout as every trainer's: `EXP/ckpt/step-N.safetensors`
(full training state for --resume: tensors in the file, every other value as JSON in its header)
and `EXP/model.safetensors` (weights + config, feature dim/type and normalisation in its JSON
header: all that token extraction and decoding need). Loading either never runs code. Written
atomically."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from polyspeech_cli.codec.config import CodecConfig
from polyspeech_cli.codec.model import SSETCodec
from polyspeech_cli.config import from_dict
from polyspeech_cli.fileio import load_model_file, load_state_file, save_model_file

KIND = "sset_codec"
MODEL = "model.safetensors"
_WRITER = "polyspeech train codec"


def read_checkpoint(path: Path | str) -> dict[str, Any]:
    return load_state_file(path, KIND, "SSET codec checkpoint", "train one with `polyspeech train codec` or check the path", _WRITER)


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
