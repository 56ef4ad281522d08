"""Perturbations of spectral features (log-mel fbank) that imitate another voice: a vocal-tract-length
warp of the frequency axis (VTLP) and speed perturbation (time stretch + the same warp, as playing
the audio faster raises every frequency). Torch, no state: callers draw the factors.

Bottom layer: imports nothing from the package.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def warp_feature_axis(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """Stretch (alpha > 1) or squeeze the last (feature) axis of `x` by linear interpolation: for
    spectral features this moves formants and harmonics like a different vocal tract (VTLP).
    Bins that would read beyond the top bin repeat it."""
    d = x.shape[-1]
    src = (torch.arange(d, dtype=torch.float32, device=x.device) / alpha).clamp(0, d - 1)
    lo = src.floor().long()
    hi = (lo + 1).clamp(max=d - 1)
    frac = (src - lo).to(x.dtype)
    return x[..., lo] * (1 - frac) + x[..., hi] * frac


def resample_time(x: torch.Tensor, t_out: int) -> torch.Tensor:
    """(T, D) -> (t_out, D) by linear interpolation along time."""
    if x.shape[0] == t_out:
        return x
    if x.shape[0] == 1:
        return x.expand(t_out, -1)
    return F.interpolate(x.t()[None], size=t_out, mode="linear", align_corners=False)[0].t()


def speed_perturb(x: torch.Tensor, rate: float) -> torch.Tensor:
    """(T, D) log-mel frames as if the audio were played `rate` times faster: shorter by `rate`,
    every frequency higher by `rate` (the feature axis is treated as linear in frequency, a fair
    approximation over the few percent of a speed perturbation)."""
    return warp_feature_axis(resample_time(x, max(1, round(x.shape[0] / rate))), rate)
