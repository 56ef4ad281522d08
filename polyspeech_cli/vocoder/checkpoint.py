"""Vocoder experiment files: `ckpt/step-N.pt` (full training state, for --resume) and `model.pt`
(weights + configs + input-feature description, all that synthesis needs). Written atomically."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import torch

from polyspeech_cli.fileio import atomic_path, load_torch_state

KIND = "polyspeech_vocoder"
_NAME = re.compile(r"^step-(\d+)\.pt$")


def list_checkpoints(exp_dir: Path) -> list[Path]:
    """Training checkpoints of `exp_dir`, oldest first."""
    d = Path(exp_dir) / "ckpt"
    found = [(int(m.group(1)), p) for p in d.glob("step-*.pt") if (m := _NAME.match(p.name))] if d.is_dir() else []
    return [p for _, p in sorted(found)]


def save_checkpoint(exp_dir: Path, step: int, state: dict[str, Any], keep_last: int) -> Path:
    path = Path(exp_dir) / "ckpt" / f"step-{step:07d}.pt"
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    for old in list_checkpoints(exp_dir)[:-keep_last] if keep_last > 0 else []:
        old.unlink(missing_ok=True)
    return path


def read_state(path: Path) -> dict[str, Any]:
    """torch.load with the error a user can act on."""
    return load_torch_state(path, KIND, "vocoder model", f"train one with `polyspeech train vocoder --exp-dir {Path(path).parent}`",
                            "polyspeech train vocoder")


def save_model(path: Path, config: Any, decoder: torch.nn.Module, generator: torch.nn.Module | None, meta: dict[str, Any]) -> None:
    """The inference file: decoder (+ speaker encoder) weights, optional HiFi-GAN generator, configs, meta."""
    state = {"kind": KIND, "config": dataclasses.asdict(config), "decoder": decoder.state_dict(),
             "generator": generator.state_dict() if generator is not None else None, **meta}
    with atomic_path(Path(path)) as tmp:
        torch.save(state, tmp)
