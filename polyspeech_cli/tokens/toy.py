"""Toy audio cut sets (formant-like modulated tones + noise) for tests and benchmarks without a corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet


def make_toy_cuts(root: Path, n: int = 6, seconds: float = 1.5, sampling_rate: int = 16000, seed: int = 0) -> CutSet:
    """n utterances with a few gliding harmonics each (speech-like spectra that change over time)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    recs, sups = [], []
    for i in range(n):
        dur = seconds * (0.7 + 0.6 * rng.random())
        t = np.arange(int(dur * sampling_rate)) / sampling_rate
        f0 = 100 + 120 * rng.random() + 30 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t)
        phase = 2 * np.pi * np.cumsum(f0) / sampling_rate
        env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 6) * t) ** 2  # syllable-rate amplitude
        formant = np.abs(np.sin(2 * np.pi * rng.uniform(0.3, 1.5) * t))
        wav = sum((1.0 / h) * np.sin(h * phase) * (1 + formant * (h % 3 == 0)) for h in range(1, 12))
        wav = 0.1 * env * wav / np.abs(wav).max() + 0.003 * rng.standard_normal(len(t))
        path = root / f"toy{i:03d}.wav"
        sf.write(path, wav.astype(np.float32), sampling_rate)
        rec = Recording.from_file(path, recording_id=f"toy{i:03d}")
        recs.append(rec)
        sups.append(SupervisionSegment(id=rec.id, recording_id=rec.id, start=0, duration=rec.duration, text="toy",
                                       speaker=f"spk{i % 2}", language="en", gender="MF"[i % 2]))
    return CutSet.from_manifests(recordings=RecordingSet.from_recordings(recs), supervisions=SupervisionSet.from_segments(sups))
