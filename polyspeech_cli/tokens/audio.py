"""Audio of a cut as a float32 mono waveform, with errors that name the cut."""

from __future__ import annotations

import numpy as np
import torch
import torchaudio.functional as AF
from lhotse.cut import Cut

from polyspeech_cli.errors import PolyspeechError


def cut_audio(cut: Cut, sampling_rate: int | None = None) -> np.ndarray:
    """Samples (N,) of the cut's first channel, resampled to `sampling_rate` if given."""
    if not cut.has_recording:
        raise PolyspeechError(f"cut '{cut.id}' has no audio (recording); pass a manifest written by `polyspeech prepare`")
    try:
        audio = cut.load_audio()
    except Exception as e:
        src = cut.recording.sources[0].source if cut.recording.sources else "?"
        raise PolyspeechError(f"cut '{cut.id}': cannot read its audio {src} ({type(e).__name__}: {e})") from e
    wav = np.asarray(audio, dtype=np.float32).reshape(audio.shape[0] if audio.ndim > 1 else 1, -1)[0]
    if not np.isfinite(wav).all():
        raise PolyspeechError(f"cut '{cut.id}': audio contains NaN/inf samples")
    if sampling_rate is not None and sampling_rate != cut.sampling_rate:
        wav = AF.resample(torch.from_numpy(wav), cut.sampling_rate, sampling_rate).numpy()
    return wav
