"""TTS mel-cepstral distortion (MCD) of synthesized vs real audio of the same text and voice, DTW-aligned.

What is measured: mel-cepstra c1..c13, the cepstrum of the 80-band mel spectrum: the DCT-II of
the natural-log mel *amplitude* (half the log power) with the cepstral scaling 2/N (so c_n is a
real-cepstrum coefficient, as in SPTK's convention, not an orthonormal-DCT one), 25 ms window,
10 ms hop, both sides resampled to 16 kHz; c0, the energy, is dropped. Frames are aligned by DTW
(Euclidean frame distance), and MCD = (10 / ln 10) * sqrt(2) * the mean distance over the aligned
path, in dB (Kubichek 1993). These are not SPTK mel-cepstra of a WORLD spectral envelope (pysptk
`mcep`, all-pass warped): the scale is the same kind, the envelope estimate is not, so compare our
systems with each other rather than with papers that report pysptk MCD. A TTS decode of a
test cut synthesizes the cut's own text in its own voice, and the cut's recording is the row's
`reference_wav`: the real utterance of that text and voice to compare with.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from polyspeech_cli.audio import read_audio, resample
from polyspeech_cli.errors import PolyspeechError

RATE = 16000
N_MELS = 80
N_CEPS = 13  # c1..c13
LOG_FLOOR = 1e-6  # mel power floor before the log: digital silence gives a finite, constant log-mel
MCD_SCALE = 10.0 / np.log(10.0) * np.sqrt(2.0)  # dB per unit of cepstral Euclidean distance


@lru_cache(maxsize=1)
def _mel_transform():
    import torchaudio

    return torchaudio.transforms.MelSpectrogram(sample_rate=RATE, n_fft=400, win_length=400, hop_length=160,
                                                n_mels=N_MELS, power=2.0)


@lru_cache(maxsize=1)
def _dct_rows() -> np.ndarray:
    """Rows 1..13 of the DCT-II with cepstral scaling 2/N (N_MELS points): (N_CEPS, N_MELS)."""
    k = np.arange(1, N_CEPS + 1)[:, None]
    n = np.arange(N_MELS)[None, :]
    return 2.0 / N_MELS * np.cos(np.pi * k * (2 * n + 1) / (2 * N_MELS))


def mel_cepstrum(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mel-cepstra c1..c13 of a mono waveform, (frames, 13) float64: the cepstrum of its log-mel amplitude at 16 kHz."""
    import torch

    wave = np.asarray(audio, dtype=np.float32)
    if wave.ndim != 1 or wave.size == 0:
        raise PolyspeechError(f"mel cepstrum wants a non-empty mono waveform, got shape {wave.shape}")
    wave = resample(wave, sample_rate, RATE)
    with torch.no_grad():
        mel = _mel_transform()(torch.from_numpy(np.ascontiguousarray(wave))).numpy().astype(np.float64)  # (80, frames)
    return (_dct_rows() @ (0.5 * np.log(np.maximum(mel, LOG_FLOOR)))).T  # log amplitude = half the log power


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance of every frame of `a` to every frame of `b`, (N, M). Summed squared
    differences one dimension at a time: no (N, M, D) temporary, and unlike the |a|^2 + |b|^2 - 2ab
    expansion equal frames are exactly 0."""
    out = np.zeros((len(a), len(b)))
    for k in range(a.shape[1]):
        diff = np.subtract.outer(a[:, k], b[:, k])
        diff *= diff
        out += diff
    return np.sqrt(out, out=out)


def dtw_mcd(ref_mc: np.ndarray, syn_mc: np.ndarray) -> float:
    """MCD in dB between two mel-cepstrum sequences (frames, dims), aligned by DTW.

    DTW with steps (1,0), (0,1), (1,1) minimises the summed Euclidean frame distance; the MCD averages
    the distance over the frame pairs of that path. Row-wise vectorised: within a row the cost is a
    prefix sum plus a running minimum, so the Python loop is over the N rows only.
    """
    ref, syn = np.asarray(ref_mc, dtype=np.float64), np.asarray(syn_mc, dtype=np.float64)
    if ref.ndim != 2 or syn.ndim != 2 or ref.shape[1] != syn.shape[1] or not len(ref) or not len(syn):
        raise PolyspeechError(f"MCD wants two non-empty (frames, dims) mel-cepstra with the same dims, got {ref.shape} and {syn.shape}")
    dist = _distances(ref, syn)
    n, m = dist.shape
    prefix = np.cumsum(dist, axis=1)  # prefix[i, j]: sum of dist[i, :j + 1]
    before = prefix - dist  # sum of dist[i, :j]
    cost = np.empty_like(dist)
    cost[0] = prefix[0]
    enter = np.empty(m)
    for i in range(1, n):
        # enter row i at column k from above or from the upper left, then walk right to j:
        # cost[i, j] = min over k <= j of enter[k] + dist[i, k..j]
        enter[0] = cost[i - 1, 0]
        np.minimum(cost[i - 1, 1:], cost[i - 1, :-1], out=enter[1:])
        cost[i] = prefix[i] + np.minimum.accumulate(enter - before[i])
    # Back-track the path (ties: diagonal first) to average the distance over it.
    i, j, total, steps = n - 1, m - 1, dist[n - 1, m - 1], 1
    while i or j:
        if i and j:
            diag, up, left = cost[i - 1, j - 1], cost[i - 1, j], cost[i, j - 1]
            if diag <= up and diag <= left:
                i, j = i - 1, j - 1
            elif up <= left:
                i -= 1
            else:
                j -= 1
        elif i:
            i -= 1
        else:
            j -= 1
        total += dist[i, j]
        steps += 1
    return float(MCD_SCALE * total / steps)


def mcd_files(reference: str, synthesized: str) -> float:
    """MCD in dB of a synthesized file against the real recording of the same text and voice."""
    ref, _ = read_audio(reference, "reference audio for MCD", "re-run the TTS decode that wrote it", sampling_rate=RATE)
    syn, _ = read_audio(synthesized, "synthesized audio for MCD", "re-run the TTS decode that wrote it", sampling_rate=RATE)
    return dtw_mcd(mel_cepstrum(ref, RATE), mel_cepstrum(syn, RATE))


def score_mcd(rows: list[dict]) -> dict:
    """Mean MCD over the TTS rows that have a `reference_wav` (`mcd_utterances` of them; the others are skipped)."""
    values = [mcd_files(r["reference_wav"], r["wav"]) for r in rows if r.get("reference_wav")]
    return {"mcd": float(np.mean(values)) if values else float("nan"), "mcd_utterances": len(values)}
