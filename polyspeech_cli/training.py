"""Helpers every training loop shares (codec, LM, speech decoder): device, precision, CSV log."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import torch

from polyspeech_cli.errors import PolyspeechError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def pick_device(name: str) -> torch.device:
    """`auto` = this process's GPU (LOCAL_RANK under torchrun) when CUDA is visible, else the CPU."""
    if name == "auto":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if torch.cuda.is_available() else torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PolyspeechError(f"device '{name}' requested but no CUDA GPU is visible (use device: auto or cpu)")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `precision` (None = fp32). `auto` is bf16 where supported, else fp16, on GPU only."""
    if precision not in PRECISIONS:
        raise PolyspeechError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r} (fix the config)")
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if precision == "bf16" else torch.float16


def optimizer_step(model: torch.nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, grad_clip: float) -> None:
    """Unscale, clip the gradient norm to `grad_clip`, step (skipped by the scaler on fp16 overflow), zero the gradients."""
    scaler.unscale_(opt)
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(opt)
    scaler.update()
    opt.zero_grad(set_to_none=True)


class CsvLog:
    """An append-only CSV training log; `fresh` starts it anew (a resumed run appends)."""

    def __init__(self, path: Path, fields: tuple[str, ...], fresh: bool) -> None:
        self.path, self.fields = Path(path), fields
        if fresh or not self.path.exists():
            with open(self.path, "w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerow(fields)

    def write(self, **row: Any) -> None:
        """Append one row; floats are written with 5 significant digits."""
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, self.fields).writerow({k: (f"{v:.5g}" if isinstance(v, float) else v) for k, v in row.items()})
