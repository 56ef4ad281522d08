"""Reference (speaker) encoder: a prompt's log-mel → one L2-normalised speaker embedding.

Conv layers see local timbre (formants, pitch harmonics), a GRU adds context, and attentive
pooling lets it weigh voiced frames over silence. It is trained jointly with the decoder, from the
reconstruction loss alone: the decoder can only learn the target's timbre through this vector,
because the prompt is a *different* utterance of the same speaker.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class SpeakerConfig:
    channels: int = 128
    conv_layers: int = 3
    kernel_size: int = 5
    gru_dim: int = 128
    embed_dim: int = 128


class SpeakerEncoder(nn.Module):
    """(B, T, n_mels) log-mel (+ (B, T) bool mask of valid frames) → (B, embed_dim), unit norm."""

    def __init__(self, n_mels: int, cfg: SpeakerConfig):
        super().__init__()
        self.cfg = cfg
        k = cfg.kernel_size
        self.convs = nn.ModuleList(nn.Conv1d(n_mels if i == 0 else cfg.channels, cfg.channels, k, padding=k // 2)
                                   for i in range(cfg.conv_layers))
        # per-frame LayerNorm (not GroupNorm over time): padding in a batch must not change the statistics
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.channels) for _ in range(cfg.conv_layers))
        self.gru = nn.GRU(cfg.channels, cfg.gru_dim, batch_first=True, bidirectional=True)
        self.attn = nn.Linear(2 * cfg.gru_dim, 1)
        self.proj = nn.Linear(4 * cfg.gru_dim, cfg.embed_dim)  # attentive mean + std

    def forward(self, mel: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            mask = torch.ones(mel.shape[:2], dtype=torch.bool, device=mel.device)
        # Remove the utterance's overall level (one scalar: loudness is not identity) but keep the
        # per-band average, because the long-term spectrum *is* a speaker cue.
        m = mask[..., None].to(mel.dtype)
        mean = (mel * m).sum((1, 2), keepdim=True) / (m.sum(1, keepdim=True) * mel.shape[2]).clamp(min=1)
        x = (mel - mean) * m
        for conv, norm in zip(self.convs, self.norms):
            x = F.gelu(norm(conv(x.transpose(1, 2)).transpose(1, 2))) * m
        # packed, so the backward direction starts at each prompt's real end, not in its padding
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        h, _ = self.gru(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=x.shape[1])
        w = self.attn(h).squeeze(-1).float().masked_fill(~mask, float("-inf")).softmax(dim=1)[..., None].to(h.dtype)
        mu = (w * h).sum(1)
        sd = ((w * (h - mu[:, None]) ** 2).sum(1)).clamp(min=1e-6).sqrt()
        return F.normalize(self.proj(torch.cat([mu, sd], dim=-1)).float(), dim=-1)
