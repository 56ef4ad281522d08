"""polyspeech_cli.audio: the one resampler (length, frequency) and the one reader (one-line errors)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from polyspeech_cli.audio import read_audio, resample
from polyspeech_cli.errors import PolyspeechError


def _peak_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / sr)[np.argmax(spec)])


@pytest.mark.parametrize("orig_sr", [8000, 22050])
def test_resample_length_and_frequency(orig_sr):
    n, freq = orig_sr // 2, 1000.0  # 0.5 s of a 1 kHz sine
    x = np.sin(2 * np.pi * freq * np.arange(n) / orig_sr).astype(np.float32)
    y = resample(x, orig_sr, 16000)
    assert y.dtype == np.float32 and y.shape == (int(np.ceil(n * 16000 / orig_sr)),)
    assert _peak_hz(y, 16000) == pytest.approx(freq, abs=4)
    mid = y[len(y) // 4 : 3 * len(y) // 4]  # away from the edges the amplitude is kept
    assert np.sqrt(np.mean(mid**2)) == pytest.approx(np.sqrt(0.5), rel=0.02)
    assert np.array_equal(resample(x, orig_sr, orig_sr), x)  # same rate: unchanged


def test_read_audio_mono_and_resampled(tmp_path):
    t = np.arange(8000) / 8000
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], axis=1).astype(np.float32) * 0.5
    sf.write(tmp_path / "a.wav", stereo, 8000)
    wav, sr = read_audio(tmp_path / "a.wav")
    assert sr == 8000 and wav.shape == (8000,) and wav.dtype == np.float32
    wav16, sr16 = read_audio(tmp_path / "a.wav", sampling_rate=16000)
    assert sr16 == 16000 and wav16.shape == (16000,)


def test_corrupt_or_missing_file_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.flac"
    bad.write_text("this is not audio")
    with pytest.raises(PolyspeechError) as e:
        read_audio(bad)
    assert str(bad) in str(e.value) and "not a readable audio file" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(PolyspeechError, match="not found"):
        read_audio(tmp_path / "missing.wav", "speaker prompt")


@pytest.mark.parametrize("channels", [1, 2])
def test_zero_sample_wav_is_one_line_error(tmp_path, channels):
    """issue 22: a 0-sample WAV used to end in `ValueError: cannot reshape array of size 0` (the channel mean)."""
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, channels), dtype=np.float32), 16000)
    assert sf.info(empty).frames == 0
    with pytest.raises(PolyspeechError) as e:
        read_audio(empty, "speaker prompt")
    msg = str(e.value)
    assert str(empty) in msg and "speaker prompt has no samples" in msg and "\n" not in msg


def test_transcribe_zero_sample_wav_is_one_line_error(tmp_path, run_cli, monkeypatch):
    """The CLI path of the same file: one `error:` line naming it, exit code 1, no traceback.
    The LM is faked (the audio is read before any model runs)."""
    from types import SimpleNamespace

    from polyspeech_cli.decode import lm_io

    monkeypatch.setattr(lm_io, "load_lm", lambda exp_dir, checkpoint=None: SimpleNamespace(tasks=["asr"], speech_input="features"))
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    r = run_cli("transcribe", empty, "--model", tmp_path / "exp")
    out = " ".join(r.output.split())
    assert r.exit_code == 1, r.output
    assert out.startswith("error:") and str(empty) in out and "has no samples" in out, r.output
    assert "Traceback" not in r.output and (r.exception is None or isinstance(r.exception, SystemExit)), r.exception
