"""A small HiFi-GAN (Kong et al. 2020): log-mel → waveform generator, multi-period and multi-scale
discriminators, and their losses (LSGAN + feature matching + 45 x mel L1), for users with a GPU.

Griffin-Lim stays the default because it needs no training; this generator replaces it when the
config says `vocoder: hifigan`. The upsampling rates must multiply to the mel hop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

LRELU = 0.1


@dataclass
class HifiganConfig:
    upsample_rates: list[int] = field(default_factory=lambda: [5, 4, 4, 2])  # product = hop_length (160)
    upsample_initial_channel: int = 128  # HiFi-GAN V1 uses 512; 128 is ~V3-sized
    resblock_kernel_sizes: list[int] = field(default_factory=lambda: [3, 7, 11])
    resblock_dilations: list[list[int]] = field(default_factory=lambda: [[1, 3, 5], [1, 3, 5], [1, 3, 5]])
    periods: list[int] = field(default_factory=lambda: [2, 3, 5, 7, 11])
    disc_channels: int = 32  # width of the first discriminator layer (HiFi-GAN: 32 MPD, 128 MSD)
    mel_loss_weight: float = 45.0
    fm_loss_weight: float = 2.0
    steps: int = 0  # GAN steps after the decoder (0: no GAN phase)
    batch_size: int = 8
    segment_frames: int = 32  # mel frames per training segment (x hop samples)
    lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.8, 0.99])


class ResBlock(nn.Module):
    def __init__(self, ch: int, k: int, dilations: list[int]):
        super().__init__()
        self.convs1 = nn.ModuleList(weight_norm(nn.Conv1d(ch, ch, k, dilation=d, padding=d * (k - 1) // 2)) for d in dilations)
        self.convs2 = nn.ModuleList(weight_norm(nn.Conv1d(ch, ch, k, padding=(k - 1) // 2)) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU)), LRELU))
        return x


class Generator(nn.Module):
    """(B, T, n_mels) log-mel → (B, T * prod(upsample_rates)) waveform in [-1, 1]."""

    def __init__(self, n_mels: int, cfg: HifiganConfig):
        super().__init__()
        ch = cfg.upsample_initial_channel
        self.pre = weight_norm(nn.Conv1d(n_mels, ch, 7, padding=3))
        self.ups, self.res = nn.ModuleList(), nn.ModuleList()
        for i, r in enumerate(cfg.upsample_rates):
            c_in, c_out = ch // 2**i, ch // 2 ** (i + 1)
            # kernel 2r, padding r/2 (rounded) gives exactly T*r samples
            self.ups.append(weight_norm(nn.ConvTranspose1d(c_in, c_out, 2 * r, stride=r, padding=r // 2 + r % 2, output_padding=r % 2)))
            self.res.append(nn.ModuleList(ResBlock(c_out, k, d) for k, d in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilations)))
        self.post = weight_norm(nn.Conv1d(ch // 2 ** len(cfg.upsample_rates), 1, 7, padding=3))
        self.hop = math.prod(cfg.upsample_rates)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.pre(mel.transpose(1, 2))
        for up, blocks in zip(self.ups, self.res):
            x = up(F.leaky_relu(x, LRELU))
            x = sum(b(x) for b in blocks) / len(blocks)
        return torch.tanh(self.post(F.leaky_relu(x))).squeeze(1)[:, : mel.shape[1] * self.hop]


class PeriodDiscriminator(nn.Module):
    """Looks at the waveform folded into (T / p, p): catches periodic (pitch) structure."""

    def __init__(self, period: int, ch: int):
        super().__init__()
        self.period = period
        chans = [1, ch, ch * 4, ch * 16, ch * 32]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(chans[i], chans[i + 1], (5, 1), (3 if i < 3 else 1, 1), padding=(2, 0))) for i in range(4)
        )
        self.post = weight_norm(nn.Conv2d(chans[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, t = x.shape
        if t % self.period:
            x = F.pad(x, (0, self.period - t % self.period), mode="reflect")
        return conv_stack(self.convs, self.post, x.view(b, 1, -1, self.period))


def conv_stack(convs: nn.ModuleList, post: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A discriminator's conv stack: (flattened logits, every layer's activations for the feature-matching loss)."""
    feats = []
    for c in convs:
        x = F.leaky_relu(c(x), LRELU)
        feats.append(x)
    x = post(x)
    feats.append(x)
    return x.flatten(1), feats


class ScaleDiscriminator(nn.Module):
    """Strided/grouped 1-D convs over the raw (or average-pooled) waveform."""

    def __init__(self, ch: int):
        super().__init__()
        spec = [(1, ch, 15, 1, 1), (ch, ch * 2, 41, 4, 4), (ch * 2, ch * 4, 41, 4, 16), (ch * 4, ch * 4, 41, 4, 16), (ch * 4, ch * 4, 5, 1, 1)]
        # groups shrink for narrow (test-sized) discriminators so they always divide the channels
        self.convs = nn.ModuleList(weight_norm(nn.Conv1d(i, o, k, s, padding=k // 2, groups=math.gcd(g, i, o))) for i, o, k, s, g in spec)
        self.post = weight_norm(nn.Conv1d(ch * 4, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return conv_stack(self.convs, self.post, x[:, None])


class Discriminators(nn.Module):
    """All period discriminators + 3 scale discriminators (raw, /2, /4)."""

    def __init__(self, cfg: HifiganConfig):
        super().__init__()
        self.mpd = nn.ModuleList(PeriodDiscriminator(p, cfg.disc_channels) for p in cfg.periods)
        self.msd = nn.ModuleList(ScaleDiscriminator(cfg.disc_channels) for _ in range(3))

    def forward(self, wave: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        outs = [d(wave) for d in self.mpd]
        x = wave
        for i, d in enumerate(self.msd):
            if i:
                x = F.avg_pool1d(x[:, None], 4, 2, padding=2).squeeze(1)
            outs.append(d(x))
        return outs


def discriminator_loss(real: list, fake: list) -> torch.Tensor:
    """LSGAN: real → 1, fake → 0."""
    return sum(torch.mean((1 - r[0].float()) ** 2) + torch.mean(f[0].float() ** 2) for r, f in zip(real, fake))


def generator_losses(real: list, fake: list) -> tuple[torch.Tensor, torch.Tensor]:
    """(adversarial LSGAN loss, feature-matching L1) for the generator."""
    adv = sum(torch.mean((1 - f[0].float()) ** 2) for f in fake)
    fm = sum(F.l1_loss(ff.float(), rf.detach().float()) for r, f in zip(real, fake) for rf, ff in zip(r[1], f[1]))
    return adv, fm
