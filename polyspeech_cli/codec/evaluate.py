"""Reconstruction quality of the codec (1 book, all books) against k-means with the same K.

All three reconstruct the same per-utterance normalised features, so the numbers compare directly:
relative MSE = sum (x - x_hat)^2 / sum (x - mean)^2 over the dev set (1.0 = predicting the mean),
cosine = mean per-frame cosine similarity between x and x_hat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from polyspeech_cli.codec.model import SSETCodec


@dataclass
class Recon:
    """Running sums for relative MSE and cosine over many utterances."""

    sq_err: float = 0.0
    n_frames: int = 0
    cos_sum: float = 0.0
    x_sum: np.ndarray | None = None
    x_sq: np.ndarray | None = None
    n_values: int = 0

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        x64, y64 = x.astype(np.float64), y.astype(np.float64)
        self.sq_err += float(((x64 - y64) ** 2).sum())
        self.x_sum = x64.sum(0) if self.x_sum is None else self.x_sum + x64.sum(0)
        self.x_sq = (x64**2).sum(0) if self.x_sq is None else self.x_sq + (x64**2).sum(0)
        num = (x64 * y64).sum(1)
        den = np.linalg.norm(x64, axis=1) * np.linalg.norm(y64, axis=1) + 1e-12
        self.cos_sum += float((num / den).sum())
        self.n_frames += x.shape[0]

    @property
    def rel_mse(self) -> float:
        assert self.x_sum is not None and self.x_sq is not None
        total_var = float((self.x_sq - self.x_sum**2 / self.n_frames).sum())
        return self.sq_err / max(total_var, 1e-12)

    @property
    def cosine(self) -> float:
        return self.cos_sum / max(self.n_frames, 1)


def usage_stats(codes: np.ndarray, size: int) -> tuple[float, float]:
    """(share of the `size` codes used at least once, perplexity = exp(entropy)) of codes (N,)."""
    counts = np.bincount(codes.reshape(-1), minlength=size).astype(np.float64)
    p = counts / max(counts.sum(), 1)
    entropy = -float((p[p > 0] * np.log(p[p > 0])).sum())
    return float((counts > 0).mean()), math.exp(entropy)


@torch.no_grad()
def codec_reconstruct(
    model: SSETCodec, feats: list[np.ndarray], n_q: int | None, device: str = "cpu"
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Reconstructions and codes (T', n_q) of each utterance (one at a time: no padding effects)."""
    model.eval()
    recons, codes = [], []
    for x in feats:
        xt = torch.from_numpy(x)[None].to(device)
        c = model.encode(xt, n_q)
        recons.append(model.decode(c, x.shape[0])[0].float().cpu().numpy())
        codes.append(c[0].cpu().numpy())
    return recons, codes


def evaluate_codec(model: SSETCodec, feats: list[np.ndarray], device: str = "cpu") -> dict[str, object]:
    """Dev metrics of the codec with all books: rel MSE, cosine, per-book usage and perplexity."""
    recons, codes = codec_reconstruct(model, feats, None, device)
    r = Recon()
    for x, y in zip(feats, recons):
        r.add(x, y)
    allc = np.concatenate(codes, 0)
    stats = [usage_stats(allc[:, i], model.cfg.codebook_size) for i in range(allc.shape[1])]
    return {
        "rel_mse": r.rel_mse,
        "cosine": r.cosine,
        "usage": [u for u, _ in stats],
        "perplexity": [p for _, p in stats],
    }
