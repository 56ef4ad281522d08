"""One mel definition shared by training targets, HiFi-GAN and synthesis; Griffin-Lim inversion.

Every stage must agree on the mel (window, hop, filterbank, log floor): a decoder trained on one
mel and inverted with another gives garbage, so the config is saved inside every checkpoint and
synthesis always rebuilds the front-end from the checkpoint, never from defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torchaudio
from torch import nn


@dataclass
class MelConfig:
    sample_rate: int = 16000
    n_fft: int = 1024  # 64 ms: fine enough that no mel filter of 80 falls between two FFT bins
    win_length: int = 1024
    hop_length: int = 160  # 10 ms, the Kaldi fbank frame rate (HiFi-GAN upsampling must multiply to it)
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0
    log_floor: float = 1e-5  # log(max(mel, floor)): -11.5 is "silence"
    griffin_lim_iters: int = 32

    @property
    def frame_shift(self) -> float:
        """Seconds per mel frame."""
        return self.hop_length / self.sample_rate


class MelFrontend(nn.Module):
    """Waveform (B, N) or (N,) → log-mel (B, T, n_mels) with T = 1 + N // hop (centred STFT)."""

    def __init__(self, cfg: MelConfig):
        super().__init__()
        self.cfg = cfg
        # Magnitude (power=1), Slaney mel scale + norm as in HiFi-GAN/librosa, so a neural vocoder
        # trained elsewhere on the same settings would accept these mels.
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, win_length=cfg.win_length, hop_length=cfg.hop_length,
            f_min=cfg.fmin, f_max=cfg.fmax, n_mels=cfg.n_mels, power=1.0, norm="slaney", mel_scale="slaney", center=True,
        )

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        squeeze = wave.dim() == 1
        with torch.autocast(device_type=wave.device.type, enabled=False):  # the STFT stays fp32 under AMP
            m = self.mel(wave.float()[None] if squeeze else wave.float())
        m = torch.log(torch.clamp(m, min=self.cfg.log_floor)).transpose(-1, -2)
        return m[0] if squeeze else m


def num_frames(num_samples: int, cfg: MelConfig) -> int:
    return 1 + num_samples // cfg.hop_length


def wave_to_mel(wave: np.ndarray, cfg: MelConfig) -> np.ndarray:
    """(N,) float waveform at cfg.sample_rate → (T, n_mels) log-mel, float32."""
    with torch.no_grad():
        return MelFrontend(cfg)(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))).numpy()


class GriffinLim(nn.Module):
    """Log-mel (T, n_mels) → waveform (T * hop,): least-squares inverse mel, then Griffin-Lim phase."""

    def __init__(self, cfg: MelConfig):
        super().__init__()
        self.cfg = cfg
        self.inv = torchaudio.transforms.InverseMelScale(
            n_stft=cfg.n_fft // 2 + 1, n_mels=cfg.n_mels, sample_rate=cfg.sample_rate, f_min=cfg.fmin, f_max=cfg.fmax,
            norm="slaney", mel_scale="slaney",
        )
        self.gl = torchaudio.transforms.GriffinLim(
            n_fft=cfg.n_fft, n_iter=cfg.griffin_lim_iters, win_length=cfg.win_length, hop_length=cfg.hop_length,
            power=1.0, rand_init=False,  # deterministic: the same mel always gives the same audio
        )

    @torch.no_grad()
    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        mel = torch.exp(log_mel.float()).transpose(-1, -2)  # (n_mels, T)
        spec = self.inv(mel).clamp(min=0.0)
        wave = self.gl(spec)
        n = log_mel.shape[-2] * self.cfg.hop_length
        return wave[..., :n] if wave.shape[-1] >= n else torch.nn.functional.pad(wave, (0, n - wave.shape[-1]))


def mel_to_wave_griffin_lim(log_mel: np.ndarray, cfg: MelConfig) -> np.ndarray:
    """(T, n_mels) log-mel → (T * hop,) float32 waveform, peak-limited to 0.99."""
    wave = GriffinLim(cfg)(torch.from_numpy(np.asarray(log_mel, dtype=np.float32))).numpy()
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    return (wave / peak * 0.99 if peak > 0.99 else wave).astype(np.float32)
