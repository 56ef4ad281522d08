"""80-dim log-mel filterbank, 25 ms window / 10 ms hop (Lhotse's Kaldi-compatible Fbank)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from lhotse import Fbank, FbankConfig
from lhotse.cut import Cut

from polyspeech_cli.audio import cut_audio
from polyspeech_cli.console import console
from polyspeech_cli.tokens.base import Extractor, LilcomChunkyWriter, NumpyFilesWriter


class FbankExtractor(Extractor):
    name, kind, needs, writer = "fbank", "features", "audio", LilcomChunkyWriter

    def __init__(self, num_mel_bins: int = 80):
        self.num_mel_bins = num_mel_bins
        self.fbank = Fbank(FbankConfig(num_mel_bins=num_mel_bins, device="cpu"))
        self.frame_shift = self.fbank.frame_shift
        try:  # lilcom: ~4x smaller than float32 at negligible loss for log-energies
            import lilcom  # noqa: F401
        except ImportError:
            console.print("[yellow]fbank: lilcom is not installed; storing float32 .npy files instead (pip install lilcom)[/]")
            self.writer = NumpyFilesWriter

    def info(self) -> dict[str, Any]:
        return {"type": "fbank", "dim": self.num_mel_bins, "frame_shift": self.frame_shift, "source": "lhotse Fbank (kaldi-compatible)"}

    def process(self, cuts: Sequence[Cut]) -> list[np.ndarray]:
        return [self.fbank.extract(cut_audio(c), c.sampling_rate) for c in cuts]
