"""Codec checkpoints: written atomically, self-describing (config, feature dim/type, normalisation)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from polyspeech_cli.codec.config import CodecConfig
from polyspeech_cli.codec.model import SSETCodec
from polyspeech_cli.config import from_dict
from polyspeech_cli.fileio import atomic_path, load_torch_state


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def read_checkpoint(path: Path | str) -> dict[str, Any]:
    return load_torch_state(path, "sset_codec", "SSET codec checkpoint", "train one with `polyspeech train codec` or check the path",
                            "polyspeech train codec")


def model_state(model: SSETCodec, cfg: CodecConfig, meta: dict[str, Any]) -> dict[str, Any]:
    """What a model-only checkpoint holds: weights + everything needed to use them on new features."""
    return {"kind": "sset_codec", "model": model.state_dict(), "config": dataclasses.asdict(cfg), **meta}


def load_codec(path: Path | str, device: str = "cpu") -> tuple[SSETCodec, dict[str, Any]]:
    """The trained codec (eval mode) and its metadata (feat_dim, feature_type, frame_shift, normalization)."""
    state = read_checkpoint(path)
    cfg = from_dict(CodecConfig, state["config"], where=f"{path}: config")
    model = SSETCodec(int(state["feat_dim"]), cfg)
    model.load_state_dict(state["model"])
    meta = {k: v for k, v in state.items() if k not in ("model", "optimizer", "config", "rng")}
    meta["config"] = cfg
    return model.to(device).eval(), meta
