"""SSET tokens: codes of a trained SSET codec over the cut's continuous features."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lhotse.cut import Cut

from polyspeech_cli.codec.checkpoint import load_codec, model_path
from polyspeech_cli.codec.data import load_cut_features, normalize
from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.tokens.base import Extractor, NumpyFilesWriter


class SSETExtractor(Extractor):
    name, kind, needs, writer = "sset", "tokens", "features", NumpyFilesWriter

    def __init__(self, checkpoint: Path, num_codebooks: int | None = None, device: str = "auto"):
        self.checkpoint = model_path(checkpoint)
        self.device = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
        self.model, self.meta = load_codec(self.checkpoint, self.device)
        n = self.model.cfg.n_codebooks
        if num_codebooks is not None and not 1 <= num_codebooks <= n:
            raise PolyspeechError(f"--num-codebooks {num_codebooks}: {self.checkpoint} has {n} codebooks")
        self.num_codebooks = num_codebooks or n
        self.frame_shift = self.meta["frame_shift"] * self.model.cfg.downsample

    def info(self) -> dict[str, Any]:
        st = self.checkpoint.stat()
        return {"type": "sset", "num_codebooks": self.num_codebooks, "codebook_size": self.model.cfg.codebook_size,
                "frame_shift": self.frame_shift, "source": str(self.checkpoint), "features": self.meta["feature_type"],
                "checkpoint_step": self.meta.get("step"), "checkpoint_mtime": st.st_mtime_ns}

    @torch.no_grad()
    def process(self, cuts: Sequence[Cut]) -> list[np.ndarray]:
        out = []
        for cut in cuts:
            x = load_cut_features(cut)
            if x.shape[1] != self.meta["feat_dim"]:
                raise PolyspeechError(
                    f"cut '{cut.id}': {x.shape[1]}-dim '{cut.features.type}' features, but the codec {self.checkpoint} "
                    f"was trained on {self.meta['feat_dim']}-dim '{self.meta['feature_type']}' features"
                )
            xt = torch.from_numpy(normalize(x, self.meta["normalization"]))[None].to(self.device)
            codes = self.model.encode(xt, self.num_codebooks)[0].cpu().numpy()
            out.append(codes[:, 0] if self.num_codebooks == 1 else codes)
        return out
