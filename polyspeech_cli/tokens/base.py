"""The extractor interface: what each representation needs, computes, and how it is attached to a cut.

A *feature* extractor (fbank, hubert) returns float (T, D) matrices stored as the cut's standard
`features`; a *token* extractor (encodec, kmeans, sset) returns int (T,) or (T, n_codebooks) arrays
stored as `cut.custom[<type>]` TemporalArrays. The driver (`extract.py`) does I/O and bookkeeping.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from lhotse import Features
from lhotse.array import TemporalArray
from lhotse.cut import Cut
from lhotse.features.io import FeaturesWriter, LilcomChunkyWriter, NumpyFilesWriter
from lhotse.utils import compute_num_frames, fastcopy

from polyspeech_cli.errors import PolyspeechError


class Extractor:
    """Base class; subclasses set the class attributes and implement `process`."""

    name: ClassVar[str]
    kind: ClassVar[str]  # "features" or "tokens"
    needs: ClassVar[str]  # "audio" or "features"
    writer: ClassVar[type[FeaturesWriter]] = NumpyFilesWriter
    batch_size: int = 1
    frame_shift: float = 0.01

    def info(self) -> dict[str, Any]:
        """Fields of <out_dir>/<type>.json (vocabulary / dimension for the LM)."""
        raise NotImplementedError

    def fingerprint(self) -> dict[str, Any]:
        """What the output depends on besides the input cuts (re-run detection)."""
        return self.info()

    def prepare(self, cuts: Sequence[Cut], where: str) -> None:
        """One-off work on the first input manifest (e.g. fitting k-means)."""

    def process(self, cuts: Sequence[Cut]) -> list[np.ndarray]:
        raise NotImplementedError

    def attach(self, cut: Cut, arr: np.ndarray, writer: FeaturesWriter) -> Cut:
        """Store `arr` for `cut` and return the cut pointing at it."""
        # Fix the stored length to what Lhotse will compute from the cut's duration, so that
        # load_features()/load_custom() return the whole array (off-by-one rounding otherwise).
        n = compute_num_frames(cut.duration, self.frame_shift, cut.sampling_rate)
        arr = fit_length(arr, n)
        if self.kind == "features":
            key = writer.write(cut.id, arr.astype(np.float32))
            feats = Features(
                type=self.name, num_frames=arr.shape[0], num_features=arr.shape[1], frame_shift=self.frame_shift,
                sampling_rate=cut.sampling_rate, start=cut.start, duration=cut.duration, storage_type=writer.name,
                storage_path=str(writer.storage_path), storage_key=key, recording_id=cut.recording_id, channels=0,
            )
            return fastcopy(cut, features=feats)
        arr = arr.astype(np.int16 if arr.max(initial=0) < 2**15 else np.int32)
        tarr: TemporalArray = writer.store_array(cut.id, arr, frame_shift=self.frame_shift, temporal_dim=0, start=cut.start)  # type: ignore[assignment]
        return fastcopy(cut, custom={**(cut.custom or {}), self.name: tarr})


def fit_length(arr: np.ndarray, n: int) -> np.ndarray:
    """Trim or edge-pad the time axis of arr to n frames (differences are rounding, a frame or two)."""
    if arr.shape[0] >= n:
        return arr[:n]
    if arr.shape[0] == 0:
        raise PolyspeechError("internal: empty output array")
    return np.concatenate([arr, np.repeat(arr[-1:], n - arr.shape[0], axis=0)], axis=0)


__all__ = ["Extractor", "LilcomChunkyWriter", "NumpyFilesWriter", "fit_length"]
