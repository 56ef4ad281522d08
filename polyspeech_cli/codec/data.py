"""Continuous features of a cut set, checked and normalised, in memory for the codec and k-means."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from lhotse import CutSet
from lhotse.cut import Cut

from polyspeech_cli.errors import PolyspeechError, require_file

NORMALIZATIONS = ("utterance_mvn", "none")


def read_cuts(path: Path | str) -> CutSet:
    """Load a cuts manifest, turning a missing/garbled file into a one-line error."""
    path = require_file(Path(path), "cuts manifest", "run `polyspeech prepare` first, or check the path")
    try:
        return CutSet.from_file(path).to_eager()
    except Exception as e:  # lhotse raises many types for a bad file
        raise PolyspeechError(f"{path}: not a readable Lhotse cuts manifest ({type(e).__name__}: {e})") from e


def load_cut_features(cut: Cut, where: str = "") -> np.ndarray:
    """cut.features as float32 (T, D); a cut without features or with NaN/inf is a user error."""
    if not cut.has_features:
        raise PolyspeechError(
            f"{where}cut '{cut.id}' has no features (run `polyspeech extract-tokens --type fbank` "
            "or `--type hubert` on this manifest first and pass the manifest it writes)"
        )
    try:
        x = np.asarray(cut.load_features(), dtype=np.float32)
    except Exception as e:
        raise PolyspeechError(f"{where}cut '{cut.id}': cannot load its features from {cut.features.storage_path} ({e})") from e
    if x.ndim != 2 or x.shape[0] == 0:
        raise PolyspeechError(f"{where}cut '{cut.id}': features have shape {x.shape}, expected (frames, dim) with frames > 0")
    if not np.isfinite(x).all():
        raise PolyspeechError(f"{where}cut '{cut.id}': features contain NaN/inf values (re-extract them; check the audio)")
    return x


def normalize(x: np.ndarray, mode: str) -> np.ndarray:
    """Per-utterance mean/variance normalisation (each dim to zero mean, unit variance)."""
    if mode == "none":
        return x
    if mode != "utterance_mvn":
        raise PolyspeechError(f"unknown normalization '{mode}' (choose one of {', '.join(NORMALIZATIONS)})")
    return (x - x.mean(0, keepdims=True)) / (x.std(0, keepdims=True) + 1e-5)


@dataclass
class FeatureSet:
    """Normalised feature matrices of many cuts."""

    ids: list[str]
    feats: list[np.ndarray]
    frame_shift: float
    feature_type: str

    @property
    def dim(self) -> int:
        return self.feats[0].shape[1]

    @property
    def num_frames(self) -> int:
        return sum(len(f) for f in self.feats)


def load_feature_set(cuts: Iterable[Cut], normalization: str, where: str = "", progress: str | None = None) -> FeatureSet:
    """Load, check and normalise the features of every cut; all cuts must share one feature dim."""
    from polyspeech_cli.console import track

    cuts = list(cuts)
    if not cuts:
        raise PolyspeechError(f"{where}no cuts to read features from (the manifest is empty)")
    ids, feats, dim = [], [], None
    for cut in track(cuts, progress or "loading features"):
        x = load_cut_features(cut, where)
        if dim is None:
            dim = x.shape[1]
        elif x.shape[1] != dim:
            raise PolyspeechError(f"{where}cut '{cut.id}': feature dim {x.shape[1]} differs from the first cut's {dim}")
        ids.append(cut.id)
        feats.append(normalize(x, normalization))
    first = cuts[0].features
    return FeatureSet(ids, feats, float(first.frame_shift), str(first.type))
