"""Residual vector quantisation with EMA codebooks and dead-code re-initialisation.

Codebooks are not trained by gradients but by exponential moving averages of the vectors assigned
to each code (VQ-VAE-2 / SoundStream), which converges faster and avoids codebook collapse better on
small data. Codes whose EMA usage falls below a threshold are re-seeded from recent encoder outputs
(the residuals of the current batch), so a large book (2048 codes) ends up mostly used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class EMACodebook(nn.Module):
    """One codebook of `size` vectors of `dim`, updated by EMA (no gradients)."""

    def __init__(self, size: int, dim: int, decay: float = 0.99, dead_threshold: float = 1.0, eps: float = 1e-5):
        super().__init__()
        self.size, self.dim, self.decay, self.dead_threshold, self.eps = size, dim, decay, dead_threshold, eps
        self.register_buffer("embed", torch.randn(size, dim) * 0.1)
        self.register_buffer("cluster_size", torch.ones(size))
        self.register_buffer("embed_sum", self.embed.clone())
        self.register_buffer("initted", torch.tensor(False))

    def assign(self, x: torch.Tensor) -> torch.Tensor:
        """Nearest code index for each row of x (N, dim)."""
        # ||x-e||^2 = ||x||^2 - 2 x.e + ||e||^2; ||x||^2 is constant per row.
        dist = self.embed.pow(2).sum(1)[None, :] - 2 * x @ self.embed.t()
        return dist.argmin(dim=1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return F.embedding(codes, self.embed)

    @torch.no_grad()
    def _sample(self, x: torch.Tensor, n: int, gen: torch.Generator | None) -> torch.Tensor:
        idx = torch.randint(0, x.shape[0], (n,), generator=gen, device="cpu").to(x.device)
        return x[idx]

    @torch.no_grad()
    def update(self, x: torch.Tensor, codes: torch.Tensor | None, gen: torch.Generator | None) -> None:
        """EMA update from the batch vectors x (N, dim) and their codes; re-seed dead codes from x."""
        if not bool(self.initted):
            # Data-dependent init: codes start on real encoder outputs, not on random noise.
            self.embed.copy_(self._sample(x, self.size, gen))
            self.embed_sum.copy_(self.embed)
            self.cluster_size.fill_(1.0)
            self.initted.fill_(True)
            return
        # bincount/index_add instead of a (N, size) one-hot matmul: same sums, far less memory traffic
        counts = torch.bincount(codes, minlength=self.size).to(x.dtype)
        sums = torch.zeros_like(self.embed_sum).index_add_(0, codes, x)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        # Laplace smoothing keeps rarely used codes from dividing by ~0.
        size = (self.cluster_size + self.eps) / (n + self.size * self.eps) * n
        self.embed.copy_(self.embed_sum / size[:, None])
        dead = self.cluster_size < self.dead_threshold
        n_dead = int(dead.sum())
        if n_dead:
            fresh = self._sample(x, n_dead, gen)
            self.embed[dead] = fresh
            self.embed_sum[dead] = fresh
            self.cluster_size[dead] = 1.0


class ResidualVQ(nn.Module):
    """`n_codebooks` EMA codebooks, each quantising the residual the previous ones left."""

    def __init__(self, n_codebooks: int, size: int, dim: int, decay: float = 0.99, dead_threshold: float = 1.0):
        super().__init__()
        self.books = nn.ModuleList(EMACodebook(size, dim, decay, dead_threshold) for _ in range(n_codebooks))

    @property
    def n_codebooks(self) -> int:
        return len(self.books)

    def forward(
        self, x: torch.Tensor, n_q: int | None = None, update: bool = False, gen: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantise x (N, dim) with the first `n_q` books.

        Returns (straight-through quantised x, codes (N, n_q), commitment loss). With `update`, the
        books are updated by EMA from these vectors (pass only valid, non-padding frames).
        """
        with torch.autocast(device_type=x.device.type, enabled=False):  # distances and EMA stay fp32 under AMP
            return self._forward(x.float(), n_q or self.n_codebooks, update, gen)

    def _forward(
        self, x: torch.Tensor, n_q: int, update: bool, gen: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        residual, quant = x, torch.zeros_like(x)
        codes, commit = [], x.new_zeros(())
        for book in self.books[:n_q]:
            if update and not bool(book.initted):
                book.update(residual.detach(), None, gen)  # data-dependent init
            c = book.assign(residual)
            q = book.lookup(c)
            if update:
                book.update(residual.detach(), c, gen)
            commit = commit + F.mse_loss(residual, q.detach())
            residual = residual - q.detach()
            quant = quant + q
            codes.append(c)
        quant_st = x + (quant - x).detach()  # straight-through estimator
        return quant_st, torch.stack(codes, dim=1), commit

    @torch.no_grad()
    def encode(self, x: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """Codes (N, n_q) for x (N, dim)."""
        return self.forward(x, n_q)[1]

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Sum of the code vectors of codes (N, n_q) → (N, dim)."""
        return sum(self.books[i].lookup(codes[:, i]) for i in range(codes.shape[1]))
