"""Vocoder experiment files, the same layout as every trainer's: `EXP/ckpt/step-N.safetensors`
(full training state for --resume: tensors in the file, every other value as JSON in its header)
and `EXP/model.safetensors` (decoder + speaker encoder weights, optional HiFi-GAN generator, and in
its JSON header the config and input-feature description: all that synthesis needs). Loading
either never runs code. Written atomically."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from polyspeech_cli.fileio import flatten, load_model_file, load_state_file, nest, save_model_file

KIND = "polyspeech_vocoder"
MODEL = "model.safetensors"
_WRITER = "polyspeech train vocoder"


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A training checkpoint, with the error a user can act on."""
    return load_state_file(path, KIND, "vocoder checkpoint", f"train with `polyspeech train vocoder --exp-dir {Path(path).parent.parent}`",
                            _WRITER)


def save_model(path: Path, config: Any, decoder: torch.nn.Module, generator: torch.nn.Module | None, meta: dict[str, Any]) -> None:
    """The inference file: decoder (+ speaker encoder) weights, optional HiFi-GAN generator, config, meta."""
    tensors = flatten(decoder=decoder.state_dict(), generator=generator.state_dict() if generator is not None else None)
    save_model_file(path, tensors, {"kind": KIND, "config": dataclasses.asdict(config), "has_generator": generator is not None, **meta})


def read_model(exp_dir: Path | str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None, dict[str, Any]]:
    """(decoder state dict, generator state dict or None, meta with the config dict) of EXP/model.safetensors."""
    path = Path(exp_dir) / MODEL
    tensors, meta = load_model_file(path, KIND, "vocoder model", f"train one with `polyspeech train vocoder --exp-dir {Path(exp_dir)}`",
                                    _WRITER)
    return nest(tensors, "decoder"), (nest(tensors, "generator") if meta.get("has_generator") else None), meta
