"""EnCodec (24 kHz) acoustic tokens: bandwidth picks the number of codebooks (1.5→2 … 24→32), 75 Hz.

Weights: `--checkpoint encodec_24khz-d7cc33bc.th` (a state dict file), or the pretrained model from
the torch hub cache (`EncodecModel.encodec_model_24khz()` downloads it once when online).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lhotse.cut import Cut

from polyspeech_cli.audio import cut_audio
from polyspeech_cli.errors import PolyspeechError, require_file
from polyspeech_cli.tokens.base import Extractor, NumpyFilesWriter

BANDWIDTHS = (1.5, 3.0, 6.0, 12.0, 24.0)
SAMPLING_RATE = 24000


def build_encodec(checkpoint: Path | None) -> torch.nn.Module:
    """The 24 kHz EnCodec architecture with weights from `checkpoint` or the pretrained hub file."""
    from encodec import EncodecModel

    with warnings.catch_warnings():  # encodec uses the deprecated torch weight_norm API
        warnings.simplefilter("ignore", FutureWarning)
        model = EncodecModel._get_model(list(BANDWIDTHS), SAMPLING_RATE, 1, causal=True, model_norm="weight_norm",
                                        audio_normalize=False, name="encodec_24khz")
    if checkpoint is not None:
        path = require_file(Path(checkpoint), "EnCodec checkpoint", "pass the encodec_24khz-d7cc33bc.th state dict")
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as e:
            raise PolyspeechError(f"{path}: not an EnCodec 24 kHz state dict ({type(e).__name__}: {str(e).splitlines()[0]})") from e
    else:
        try:
            model.load_state_dict(EncodecModel._get_pretrained("encodec_24khz-d7cc33bc.th", None))
        except Exception as e:
            raise PolyspeechError(
                "no pretrained EnCodec weights (not in the torch hub cache and no internet): "
                "pass --checkpoint PATH/encodec_24khz-d7cc33bc.th"
            ) from e
    return model.eval()


class EncodecExtractor(Extractor):
    name, kind, needs, writer = "encodec", "tokens", "audio", NumpyFilesWriter
    frame_shift = 1 / 75

    def __init__(self, checkpoint: Path | None, bandwidth: float = 6.0, device: str = "auto", model: torch.nn.Module | None = None):
        if bandwidth not in BANDWIDTHS:
            raise PolyspeechError(f"--bandwidth {bandwidth}: EnCodec 24 kHz supports {', '.join(map(str, BANDWIDTHS))} kbps")
        self.checkpoint, self.bandwidth = checkpoint, bandwidth
        self.model = model if model is not None else build_encodec(checkpoint)
        self.model.set_target_bandwidth(bandwidth)
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
        self.model.to(self.device)
        self.frame_shift = 1 / self.model.frame_rate
        self.num_codebooks = int(self.model.quantizer.get_num_quantizers_for_bandwidth(self.model.frame_rate, bandwidth))

    def info(self) -> dict[str, Any]:
        return {"type": "encodec", "num_codebooks": self.num_codebooks, "codebook_size": self.model.quantizer.bins,
                "frame_shift": self.frame_shift, "bandwidth": self.bandwidth,
                "source": str(self.checkpoint) if self.checkpoint else "encodec_24khz (pretrained, torch hub cache)"}

    @torch.no_grad()
    def process(self, cuts: Sequence[Cut]) -> list[np.ndarray]:
        out = []
        for cut in cuts:  # one at a time: EnCodec has no padding mask
            wav = torch.from_numpy(cut_audio(cut, SAMPLING_RATE))[None, None].to(self.device)
            frames = self.model.encode(wav)
            codes = torch.cat([c for c, _ in frames], dim=-1)[0]  # (n_q, T)
            out.append(codes.t().cpu().numpy())
        return out
