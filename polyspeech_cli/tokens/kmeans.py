"""Mini-batch k-means in torch (the paper's discrete-token baseline), with a full-batch polish.

sklearn/faiss are not dependencies; K=2048 on ~10^6 frames is a few GEMMs per step, which torch
does well on one CPU thread. Empty clusters are re-seeded from the points worst served by the
current centroids, so all K centroids end up in use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.fileio import load_model_file, save_model_file


@dataclass
class KMeansConfig:
    k: int = 2048
    batch_size: int = 10000
    steps: int = 100  # mini-batch steps
    polish_iters: int = 3  # full Lloyd iterations on a sample at the end
    polish_sample: int = 200000
    seed: int = 0


def assign(x: torch.Tensor, centroids: torch.Tensor, chunk: int = 65536) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid ids and squared distances for x (N, D), chunked to bound memory."""
    c2 = centroids.pow(2).sum(1)
    ids, dists = [], []
    for s in range(0, x.shape[0], chunk):
        xb = x[s : s + chunk]
        d = c2[None, :] - 2 * xb @ centroids.t()
        m, i = d.min(1)
        ids.append(i)
        dists.append((m + xb.pow(2).sum(1)).clamp_min(0))
    return torch.cat(ids), torch.cat(dists)


def fit_kmeans(x: np.ndarray, cfg: KMeansConfig, log: Any = None) -> np.ndarray:
    """Centroids (K, D) for the rows of x (N, D)."""
    n, k = x.shape[0], cfg.k
    if n < k:
        raise PolyspeechError(f"k-means: only {n} feature frames for K={k} clusters (use more data or a smaller --k)")
    g = torch.Generator().manual_seed(cfg.seed)
    data = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    cent = data[torch.randperm(n, generator=g)[:k]].clone()
    counts = torch.zeros(k)
    for step in range(cfg.steps):
        batch = data[torch.randint(0, n, (min(cfg.batch_size, n),), generator=g)]
        ids, dist = assign(batch, cent)
        bc = torch.bincount(ids, minlength=k).float()
        sums = torch.zeros_like(cent).index_add_(0, ids, batch)
        counts += bc
        # per-centroid learning rate 1/count (Sculley 2010), applied to the batch mean
        upd = bc > 0
        lr = bc[upd] / counts[upd]
        cent[upd] = (1 - lr)[:, None] * cent[upd] + lr[:, None] * (sums[upd] / bc[upd][:, None])
        if step >= 10:  # a centroid no batch has picked yet sits in an empty region
            dead = counts == 0
            _reseed(cent, dead, batch, dist)
    sample = data if n <= cfg.polish_sample else data[torch.randperm(n, generator=g)[: cfg.polish_sample]]
    for _ in range(cfg.polish_iters):  # Lloyd iterations: exact means of the assigned points
        ids, dist = assign(sample, cent)
        bc = torch.bincount(ids, minlength=k).float()
        sums = torch.zeros_like(cent).index_add_(0, ids, sample)
        cent[bc > 0] = sums[bc > 0] / bc[bc > 0][:, None]
        _reseed(cent, bc == 0, sample, dist)
    return cent.numpy()


def _reseed(cent: torch.Tensor, dead: torch.Tensor, x: torch.Tensor, dist: torch.Tensor) -> None:
    """Move dead centroids onto the points of x farthest from their current centroid."""
    n_dead = int(dead.sum())
    if n_dead == 0:
        return
    far = dist.topk(min(n_dead, x.shape[0])).indices
    cent[dead.nonzero()[: len(far), 0]] = x[far]


def save_centroids(path: Path, centroids: np.ndarray, meta: dict[str, Any]) -> None:
    """Centroids as safetensors, `meta` (normalisation, frame shift, feature type) as JSON in its header."""
    save_model_file(path, {"centroids": torch.from_numpy(np.ascontiguousarray(centroids))}, {"kind": "kmeans", **meta})


def load_centroids(path: Path | str) -> tuple[np.ndarray, dict[str, Any]]:
    tensors, meta = load_model_file(path, "kmeans", "k-means centroids file", "fit them with `polyspeech extract-tokens --type kmeans` first",
                                    "polyspeech extract-tokens --type kmeans")
    if "centroids" not in tensors:
        raise PolyspeechError(f"{path}: holds no centroids (refit with `polyspeech extract-tokens --type kmeans`)")
    return tensors["centroids"].numpy(), meta


def quantize(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Token ids (T,) for frames x (T, D)."""
    ids, _ = assign(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(centroids))
    return ids.numpy()
