"""k-means tokens over continuous features (the paper's baseline): fit on the first manifest, reuse after."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from lhotse.cut import Cut

from polyspeech_cli.codec.data import load_cut_features, load_feature_set, normalize
from polyspeech_cli.console import console
from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.tokens.base import Extractor, NumpyFilesWriter
from polyspeech_cli.tokens.kmeans import (
    KMeansConfig,
    fit_kmeans,
    load_centroids,
    quantize,
    save_centroids,
)


class KMeansExtractor(Extractor):
    name, kind, needs, writer = "kmeans", "tokens", "features", NumpyFilesWriter

    def __init__(self, centroids_path: Path, k: int, normalization: str = "utterance_mvn", fit_steps: int = 100):
        self.path, self.k, self.normalization, self.fit_steps = Path(centroids_path), k, normalization, fit_steps
        self.centroids: np.ndarray | None = None
        self.meta: dict[str, Any] = {}
        if self.path.is_file():
            self.centroids, self.meta = load_centroids(self.path)
            self.k, self.normalization = self.centroids.shape[0], self.meta["normalization"]
            self.frame_shift = self.meta["frame_shift"]
            console.print(f"k-means: using the centroids in {self.path} (K={self.k}; delete it to refit)")

    def info(self) -> dict[str, Any]:
        return {"type": "kmeans", "num_codebooks": 1, "codebook_size": self.k, "frame_shift": self.frame_shift,
                "source": str(self.path), "normalization": self.normalization, "features": self.meta.get("feature_type"),
                "centroids_mtime": self.path.stat().st_mtime_ns if self.path.is_file() else None}

    def prepare(self, cuts: Sequence[Cut], where: str) -> None:
        if self.centroids is not None:
            return
        data = load_feature_set(cuts, self.normalization, where, "k-means: loading features")
        console.print(f"k-means: fitting K={self.k} on {data.num_frames} frames of {where.rstrip(': ')}")
        self.centroids = fit_kmeans(np.concatenate(data.feats), KMeansConfig(k=self.k, steps=self.fit_steps))
        self.frame_shift = data.frame_shift
        self.meta = {"normalization": self.normalization, "frame_shift": data.frame_shift, "feature_type": data.feature_type,
                     "fitted_on": where.rstrip(": ")}
        save_centroids(self.path, self.centroids, self.meta)
        console.print(f"k-means: wrote {self.path}")

    def process(self, cuts: Sequence[Cut]) -> list[np.ndarray]:
        assert self.centroids is not None
        out = []
        for cut in cuts:
            x = load_cut_features(cut)
            if x.shape[1] != self.centroids.shape[1]:
                raise PolyspeechError(f"cut '{cut.id}': {x.shape[1]}-dim features but {self.path} has {self.centroids.shape[1]}-dim centroids")
            out.append(quantize(normalize(x, self.normalization), self.centroids))
        return out
