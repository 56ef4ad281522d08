"""The one audio path: one reader and one resampler, used by every stage.

- Reading goes through Lhotse (`Recording.from_file(...).load_audio()` for a file,
  `cut.load_audio()` for a cut), which decodes with soundfile/libsndfile; never `torchaudio.load`
  (it needs torchcodec + ffmpeg). A missing, corrupt or truncated file is a one-line
  PolyspeechError that names it.
- Resampling is Lhotse's `Resample` transform: the same band-limited windowed-sinc resampler (kernel
  built once per rate pair and cached) that a manifest's lazy `recording.resample(...)` runs, so audio
  resampled by `prepare --sample-rate` and audio resampled here (fbank on the fly, speaker prompts,
  SECS, EnCodec/HuBERT input, the generated corpus) go through exactly the same filter.

This is a bottom-layer module: it imports only `polyspeech_cli.errors` from the package.
"""

from __future__ import annotations

import wave as _wave
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from polyspeech_cli.errors import PolyspeechError

if TYPE_CHECKING:
    from lhotse.cut import Cut

READ_FIX = "pass a WAV, FLAC or MP3 recording (re-encode others, e.g. `ffmpeg -i in.m4a -ar 16000 out.flac`)"
EMPTY_FIX = "pass a recording with audio in it (record or export it again, or leave the file out)"


def error_reason(e: Exception) -> str:
    """The most specific line of a (possibly multi-backend) Lhotse audio error."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for ln in lines:
        if "Error" in ln and ":" in ln and not ln.startswith(("Reading audio", "Fetching info")):
            return ln.split(": ")[-1][:120]
    return (lines[0] if lines else type(e).__name__)[:120]


def wav_header_frames(path: Path) -> int | None:
    """Frames announced by a PCM WAV header (libsndfile silently trusts the file size instead)."""
    try:
        with _wave.open(str(path)) as w:
            return w.getnframes()
    except (_wave.Error, EOFError, OSError):
        return None


def resample(wave: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """`wave` (N,) or (channels, N) resampled from `orig_sr` to `new_sr` Hz, as float32.

    The output has ceil(N * new_sr / orig_sr) samples (Lhotse's/torchaudio's length convention).
    """
    from lhotse.augmentation import Resample

    x = np.ascontiguousarray(wave, dtype=np.float32)
    orig_sr, new_sr = int(orig_sr), int(new_sr)
    if orig_sr <= 0 or new_sr <= 0:
        raise PolyspeechError(f"cannot resample from {orig_sr} Hz to {new_sr} Hz: sample rates must be positive")
    if orig_sr == new_sr or x.shape[-1] == 0:
        return x
    mono = x.ndim == 1
    out = Resample(source_sampling_rate=orig_sr, target_sampling_rate=new_sr)(x[None] if mono else x)
    out = np.asarray(out, dtype=np.float32)
    return out[0] if mono else out


def read_audio(path: Path | str, what: str = "audio file", fix: str = READ_FIX, sampling_rate: int | None = None) -> tuple[np.ndarray, int]:
    """(mono float32 samples, sample rate) of an audio file (channels averaged); resampled to
    `sampling_rate` if given. A missing, unreadable, truncated, empty or non-finite file is a one-line
    PolyspeechError naming it (`what` names the file's role, e.g. "speaker prompt")."""
    from lhotse import Recording

    path = Path(path)
    if not path.is_file():
        raise PolyspeechError(f"{what} not found: {path} ({fix})")
    try:
        recording = Recording.from_file(path)
    except Exception as e:  # lhotse wraps every backend's failure in its own error types
        raise PolyspeechError(f"{path}: not a readable audio file ({error_reason(e)}); {fix}") from None
    if path.suffix.lower() == ".wav":
        header = wav_header_frames(path)
        if header is not None and header > recording.num_samples:
            raise PolyspeechError(f"{path}: truncated WAV ({recording.num_samples} of {header} samples present); {fix}")
    if recording.num_samples == 0:
        raise PolyspeechError(f"{path}: {what} has no samples (0 frames); {EMPTY_FIX}")
    try:
        audio = np.asarray(recording.load_audio(), dtype=np.float32)
    except Exception as e:
        raise PolyspeechError(f"{path}: corrupt or truncated audio ({error_reason(e)}); {fix}") from None
    if audio.size == 0:  # before the channel mean: a (channels, 0) array cannot be reshaped to (-1, 0)
        raise PolyspeechError(f"{path}: {what} has no samples (0 frames); {EMPTY_FIX}")
    wav = audio.reshape(-1, audio.shape[-1]).mean(axis=0) if audio.ndim > 1 else audio
    if not np.isfinite(wav).all():
        raise PolyspeechError(f"{path}: audio contains NaN/inf samples; {fix}")
    sr = int(recording.sampling_rate)
    if sampling_rate is not None and sampling_rate != sr:
        return resample(wav, sr, sampling_rate), int(sampling_rate)
    return wav, sr


def cut_audio(cut: Cut, sampling_rate: int | None = None) -> np.ndarray:
    """Samples (N,) of the cut's first channel (float32), resampled to `sampling_rate` if given."""
    if not cut.has_recording:
        raise PolyspeechError(f"cut '{cut.id}' has no audio (recording); pass a manifest written by `polyspeech prepare`")
    try:
        audio = cut.load_audio()
    except Exception as e:
        src = cut.recording.sources[0].source if cut.recording.sources else "?"
        raise PolyspeechError(f"cut '{cut.id}': cannot read its audio {src} ({error_reason(e)})") from e
    wav = np.asarray(audio, dtype=np.float32).reshape(audio.shape[0] if audio.ndim > 1 else 1, -1)[0]
    if not np.isfinite(wav).all():
        raise PolyspeechError(f"cut '{cut.id}': audio contains NaN/inf samples")
    if sampling_rate is not None and sampling_rate != cut.sampling_rate:
        wav = resample(wav, cut.sampling_rate, sampling_rate)
    return wav
