"""Hidden states of one layer of a HuBERT / wav2vec2-family model (transformers), batched.

Real checkpoints: `TencentGameMate/chinese-hubert-base` (the paper's choice for Mandarin) and
`facebook/hubert-base-ls960` (English); layer 9 is the usual semantic layer of base models.
`--model` is a local directory (`save_pretrained` layout) or a hub id already in the HF cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lhotse.cut import Cut

from polyspeech_cli.audio import cut_audio
from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.tokens.base import Extractor, NumpyFilesWriter

FAMILY = {"hubert", "wav2vec2", "wav2vec2-conformer", "wavlm", "data2vec-audio", "unispeech", "unispeech-sat"}
SAMPLING_RATE = 16000


def load_ssl_model(model: str) -> tuple[torch.nn.Module, Any]:
    """AutoModel + config for a HuBERT-family checkpoint, or a PolyspeechError naming `model`."""
    from transformers import AutoConfig, AutoModel

    local = Path(model).is_dir()
    if not local and (model.startswith(("/", ".", "~")) or model.count("/") != 1):
        raise PolyspeechError(f"--model {model}: no such directory, and not a hub id like facebook/hubert-base-ls960")
    try:
        try:  # the HF cache first: offline machines would otherwise wait through network retries
            config = AutoConfig.from_pretrained(model, local_files_only=True)
            local = True
        except OSError:
            config = AutoConfig.from_pretrained(model)
    except Exception as e:
        hint = "a directory written by save_pretrained" if local else "a local directory or a hub id already downloaded to the HF cache"
        raise PolyspeechError(f"--model {model}: not a loadable transformers checkpoint (pass {hint}; {type(e).__name__})") from e
    if config.model_type not in FAMILY:
        raise PolyspeechError(
            f"--model {model}: model_type '{config.model_type}' is not a HuBERT/wav2vec2-family model "
            f"(expected one of {', '.join(sorted(FAMILY))})"
        )
    try:
        net = AutoModel.from_pretrained(model, local_files_only=local)
    except Exception as e:
        raise PolyspeechError(f"--model {model}: cannot load the weights ({type(e).__name__}: {str(e).splitlines()[0]})") from e
    return net.eval(), config


class HubertExtractor(Extractor):
    name, kind, needs, writer = "hubert", "features", "audio", NumpyFilesWriter

    def __init__(self, model: str, layer: int, batch_size: int = 8, device: str = "auto"):
        self.model_name, self.layer, self.batch_size = model, layer, batch_size
        self.net, self.config = load_ssl_model(model)
        n_layers = self.config.num_hidden_layers
        if not 0 <= layer <= n_layers:
            raise PolyspeechError(f"--layer {layer}: {model} has layers 0..{n_layers} (0 = CNN features, {n_layers} = last)")
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
        # half precision on GPU only: CPU fp16 convolutions are slow or unsupported
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.net.to(self.device, self.dtype)
        # the conv stack's total stride: 320 samples = 20 ms for every base/large model
        self.hop = int(np.prod(self.config.conv_stride))
        self.frame_shift = self.hop / SAMPLING_RATE
        # "layer"-norm models (large, wav2vec2-lv60) are trained with zero-mean/unit-var input and
        # attention masks; "group"-norm base models were trained unmasked on raw waveforms.
        self.normalize_input = self.config.feat_extract_norm == "layer"

    def info(self) -> dict[str, Any]:
        return {"type": "hubert", "dim": self.config.hidden_size, "frame_shift": self.frame_shift, "source": self.model_name,
                "layer": self.layer, "model_type": self.config.model_type}

    @torch.no_grad()
    def process(self, cuts: Sequence[Cut]) -> list[np.ndarray]:
        wavs = [cut_audio(c, SAMPLING_RATE) for c in cuts]
        if self.normalize_input:
            wavs = [(w - w.mean()) / np.sqrt(w.var() + 1e-7) for w in wavs]
        lens = [len(w) for w in wavs]
        x = torch.zeros(len(wavs), max(lens))
        mask = torch.zeros(len(wavs), max(lens), dtype=torch.long)
        for i, w in enumerate(wavs):
            x[i, : len(w)], mask[i, : len(w)] = torch.from_numpy(w), 1
        out = self.net(
            x.to(self.device, self.dtype),
            attention_mask=mask.to(self.device) if self.normalize_input else None,
            output_hidden_states=True,
        )
        h = out.hidden_states[self.layer].float().cpu().numpy()
        n_frames = self.net._get_feat_extract_output_lengths(torch.tensor(lens)).tolist()
        return [h[i, : int(n)] for i, n in enumerate(n_frames)]
