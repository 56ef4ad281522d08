"""The speech decoder: normalised semantic features (any dim, any frame rate) + speaker → log-mel.

Features are first resampled in time to the mel frame rate (linear interpolation), so the output
has exactly one mel frame per hop of audio and the duration follows the number of input frames.
The body is a stack of dilated conv residual blocks; the speaker embedding enters either by FiLM
(a per-block scale and shift of the normalised activations) or by concatenation to the input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from polyspeech_cli.vocoder.mel import MelConfig
from polyspeech_cli.vocoder.speaker import SpeakerConfig, SpeakerEncoder

CONDITIONINGS = ("film", "concat")


@dataclass
class DecoderConfig:
    channels: int = 256
    blocks: int = 6
    kernel_size: int = 5
    dilations: list[int] = field(default_factory=lambda: [1, 2, 4])  # cycled over the blocks
    conditioning: str = "film"  # film | concat
    speaker: SpeakerConfig = field(default_factory=SpeakerConfig)


def mel_frames_for(num_in: int, in_shift: float, mel: MelConfig) -> int:
    """Mel frames for `num_in` input frames of `in_shift` seconds (same duration, at least 1)."""
    return max(1, round(num_in * in_shift / mel.frame_shift))


class ResBlock(nn.Module):
    """x + conv1x1(gelu(dilated conv(FiLM(LayerNorm(x))))), channels-last."""

    def __init__(self, ch: int, k: int, dilation: int, spk_dim: int, film: bool):
        super().__init__()
        self.norm = nn.LayerNorm(ch)
        self.conv = nn.Conv1d(ch, ch, k, padding=dilation * (k // 2), dilation=dilation)
        self.out = nn.Conv1d(ch, ch, 1)
        self.film = nn.Linear(spk_dim, 2 * ch) if film else None
        if self.film is not None:  # start as identity: scale 1, shift 0
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, spk: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        if self.film is not None:
            scale, shift = self.film(spk)[:, None].chunk(2, dim=-1)
            h = h * (1 + scale) + shift
        h = h * mask  # padding must not leak into real frames through the conv
        h = self.out(F.gelu(self.conv(h.transpose(1, 2)))).transpose(1, 2)
        return (x + h) * mask


class SpeechDecoder(nn.Module):
    """(B, T, D) features at the mel rate + (B, E) speaker embedding → (B, T, n_mels) log-mel.

    Owns the speaker encoder (trained jointly) and the training-set log-mel mean/std per band:
    the network predicts normalised mel, which converges much faster than raw log values.
    """

    def __init__(self, feat_dim: int, n_mels: int, cfg: DecoderConfig):
        super().__init__()
        if cfg.conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {cfg.conditioning!r}")
        self.feat_dim, self.n_mels, self.cfg = feat_dim, n_mels, cfg
        ch, e = cfg.channels, cfg.speaker.embed_dim
        self.speaker = SpeakerEncoder(n_mels, cfg.speaker)
        film = cfg.conditioning == "film"
        self.inp = nn.Linear(feat_dim + (0 if film else e), ch)
        self.blocks = nn.ModuleList(
            ResBlock(ch, cfg.kernel_size, cfg.dilations[i % len(cfg.dilations)], e, film) for i in range(cfg.blocks)
        )
        self.norm = nn.LayerNorm(ch)
        self.head = nn.Linear(ch, n_mels)
        self.register_buffer("mel_mean", torch.zeros(n_mels))
        self.register_buffer("mel_std", torch.ones(n_mels))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def set_mel_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mel_mean.copy_(mean)
        self.mel_std.copy_(std.clamp(min=1e-3))

    def normalize_mel(self, mel: torch.Tensor) -> torch.Tensor:
        return (mel - self.mel_mean) / self.mel_std

    def forward(self, feats: torch.Tensor, spk: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised log-mel prediction (B, T, n_mels); `denormalize` gives log-mel."""
        if mask is None:
            mask = torch.ones(feats.shape[:2], dtype=torch.bool, device=feats.device)
        m = mask[..., None].to(feats.dtype)
        x = feats if self.cfg.conditioning == "film" else torch.cat([feats, spk[:, None].expand(-1, feats.shape[1], -1)], -1)
        h = self.inp(x) * m
        for block in self.blocks:
            h = block(h, spk, m)
        return self.head(self.norm(h)) * m

    def denormalize(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.mel_std + self.mel_mean
