"""Vocoder experiment files, the same layout as every trainer's: `EXP/ckpt/step-N.pt` (full
training state for --resume, plain tensors and values: loaded with `weights_only=True`) and
`EXP/model.safetensors` (decoder + speaker encoder weights, optional HiFi-GAN generator, and in its
JSON header the config and input-feature description: all that synthesis needs; loading it never
runs code). Written atomically."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import torch

from polyspeech_cli.fileio import flatten, load_model_file, load_torch_state, nest, save_model_file, save_torch_state

KIND = "polyspeech_vocoder"
MODEL = "model.safetensors"
_NAME = re.compile(r"^step-(\d+)\.pt$")
_WRITER = "polyspeech train vocoder"


def list_checkpoints(exp_dir: Path) -> list[Path]:
    """Training checkpoints of `exp_dir`, oldest first."""
    d = Path(exp_dir) / "ckpt"
    found = [(int(m.group(1)), p) for p in d.glob("step-*.pt") if (m := _NAME.match(p.name))] if d.is_dir() else []
    return [p for _, p in sorted(found)]


def save_checkpoint(exp_dir: Path, step: int, state: dict[str, Any], keep_last: int) -> Path:
    path = Path(exp_dir) / "ckpt" / f"step-{step:07d}.pt"
    save_torch_state(path, state)
    for old in list_checkpoints(exp_dir)[:-keep_last] if keep_last > 0 else []:
        old.unlink(missing_ok=True)
    return path


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A training checkpoint, with the error a user can act on."""
    return load_torch_state(path, KIND, "vocoder checkpoint", f"train with `polyspeech train vocoder --exp-dir {Path(path).parent.parent}`",
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
