"""SSETCodec: 1-D conv encoder → residual VQ → conv decoder, over (normalised) feature frames."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from polyspeech_cli.codec.config import CodecConfig
from polyspeech_cli.codec.rvq import ResidualVQ


class ResBlock(nn.Module):
    def __init__(self, ch: int, k: int):
        super().__init__()
        self.conv1 = nn.Conv1d(ch, ch, k, padding=k // 2)
        self.conv2 = nn.Conv1d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.gelu(self.conv1(F.gelu(x))))


class SSETCodec(nn.Module):
    """Features (B, T, D) → codes (B, T/downsample, n_codebooks) → features (B, T, D)."""

    def __init__(self, feat_dim: int, cfg: CodecConfig):
        super().__init__()
        self.feat_dim, self.cfg, s, ch, k = feat_dim, cfg, cfg.downsample, cfg.channels, cfg.kernel_size
        enc: list[nn.Module] = [nn.Conv1d(feat_dim, ch, k, padding=k // 2)]
        enc += [ResBlock(ch, k) for _ in range(cfg.res_blocks)]
        # kernel/padding chosen so that T frames (a multiple of s) map to exactly T/s latent frames
        kd, pd = 2 * s - s % 2, (s - s % 2) // 2
        if s > 1:
            enc += [nn.GELU(), nn.Conv1d(ch, ch, kd, stride=s, padding=pd)]
        enc += [ResBlock(ch, k) for _ in range(cfg.res_blocks)] + [nn.GELU(), nn.Conv1d(ch, cfg.latent_dim, 1)]
        self.encoder = nn.Sequential(*enc)
        self.rvq = ResidualVQ(cfg.n_codebooks, cfg.codebook_size, cfg.latent_dim, cfg.ema_decay, cfg.dead_code_threshold)
        dec: list[nn.Module] = [nn.Conv1d(cfg.latent_dim, ch, k, padding=k // 2)]
        dec += [ResBlock(ch, k) for _ in range(cfg.res_blocks)]
        if s > 1:
            dec += [nn.GELU(), nn.ConvTranspose1d(ch, ch, kd, stride=s, padding=pd)]
        dec += [ResBlock(ch, k) for _ in range(cfg.res_blocks)] + [nn.GELU(), nn.Conv1d(ch, feat_dim, 1)]
        self.decoder = nn.Sequential(*dec)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """Pad time (B, T, D) to a multiple of downsample (edge-replicated, so no fake silence)."""
        s, t = self.cfg.downsample, x.shape[1]
        extra = (-t) % s
        return torch.cat([x, x[:, -1:].expand(-1, extra, -1)], dim=1) if extra else x

    def latent_len(self, t: int) -> int:
        return -(-t // self.cfg.downsample)

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) → (B, ceil(T/s), latent_dim)."""
        z = self.encoder(self._pad(x).transpose(1, 2)).transpose(1, 2)
        return z[:, : self.latent_len(x.shape[1])]

    def decode_latent(self, z: torch.Tensor, t: int) -> torch.Tensor:
        """(B, T', latent_dim) → (B, t, D)."""
        y = self.decoder(z.transpose(1, 2)).transpose(1, 2)
        if y.shape[1] < t:
            y = torch.cat([y, y[:, -1:].expand(-1, t - y.shape[1], -1)], dim=1)
        return y[:, :t]

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, n_q: int | None = None, gen: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruct x (B, T, D). `mask` (B, T) marks valid frames; in training mode the codebooks
        learn (EMA) from valid latent frames only. Returns (reconstruction, codes, commitment loss)."""
        b, t, _ = x.shape
        z = self.encode_latent(x)
        tz = z.shape[1]
        if mask is None:
            zmask = torch.ones(b, tz, dtype=torch.bool, device=x.device)
        else:  # a latent frame is valid when its first feature frame is
            zmask = mask[:, :: self.cfg.downsample][:, :tz]
        flat = z[zmask]
        q, codes_flat, commit = self.rvq(flat, n_q=n_q, update=self.training, gen=gen)
        zq = torch.zeros(b, tz, z.shape[2], dtype=q.dtype, device=z.device)
        zq[zmask] = q
        codes = torch.zeros(b, tz, codes_flat.shape[1], dtype=torch.long, device=z.device)
        codes[zmask] = codes_flat
        return self.decode_latent(zq, t), codes, commit

    @torch.no_grad()
    def encode(self, x: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """Features (B, T, D) → codes (B, ceil(T/s), n_q)."""
        z = self.encode_latent(x)
        b, tz, d = z.shape
        return self.rvq.encode(z.reshape(b * tz, d).float(), n_q).reshape(b, tz, -1)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, t: int | None = None) -> torch.Tensor:
        """Codes (B, T', n) → features (B, t, D) (in the normalised space the codec was trained in)."""
        b, tz, n = codes.shape
        z = self.rvq.decode(codes.reshape(b * tz, n)).reshape(b, tz, -1)
        return self.decode_latent(z, t or tz * self.cfg.downsample)
