"""Tokenisation speed: fbank and SSET real-time factor on one CPU thread (target RTF <= 0.01).

RTF = processing seconds / audio seconds. fbank includes reading and decoding the audio; SSET
starts from fbank features in memory (normalisation + encoder + RVQ), so fbank + SSET is the
end-to-end cost of SSET tokens from audio.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.table import Table

from polyspeech_cli.codec.checkpoint import load_codec
from polyspeech_cli.codec.config import CodecConfig
from polyspeech_cli.codec.data import normalize
from polyspeech_cli.data.manifest import read_cuts
from polyspeech_cli.codec.model import SSETCodec
from polyspeech_cli.console import console
from polyspeech_cli.config import load_config
from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.fileio import atomic_write_text
from polyspeech_cli.tokens.fbank import FbankExtractor


def bench_tokens(cuts_path: Path, checkpoint: Path | None, config: Path, max_cuts: int, out: Path | None) -> dict[str, Any]:
    torch.set_num_threads(1)  # the target is per CPU core
    cuts = read_cuts(cuts_path).subset(first=max_cuts)
    for c in cuts:
        if not c.has_recording:
            raise PolyspeechError(f"{cuts_path}: cut '{c.id}' has no audio; bench reads audio (pass a `prepare` manifest)")
    if checkpoint is not None:
        model, meta = load_codec(checkpoint)
        norm, what = meta["normalization"], str(checkpoint)
    else:  # speed depends on the architecture only, so random weights of the config's shape will do
        cfg = load_config(config, CodecConfig)
        model, norm, what = SSETCodec(80, cfg).eval(), cfg.normalize, f"{config} (random weights)"
    fb = FbankExtractor()
    audio_s = sum(c.duration for c in cuts)
    feats, t0 = [], time.perf_counter()
    for c in cuts:
        feats.extend(fb.process([c]))
    t_fbank = time.perf_counter() - t0
    if feats[0].shape[1] != model.feat_dim:
        raise PolyspeechError(f"{what}: codec expects {model.feat_dim}-dim features, bench computes 80-dim fbank")
    with torch.inference_mode():
        model.encode(torch.from_numpy(normalize(feats[0], norm))[None])  # warm-up (allocator, kernels)
        t0 = time.perf_counter()
        for x in feats:
            model.encode(torch.from_numpy(normalize(x.astype(np.float32), norm))[None])
        t_sset = time.perf_counter() - t0
    rows = {"fbank (audio → 80-dim fbank)": t_fbank, "SSET (fbank → tokens)": t_sset, "fbank + SSET": t_fbank + t_sset}
    table = Table(title=f"tokenisation speed, 1 CPU thread, {len(cuts)} cuts / {audio_s:.0f} s of audio; codec {what}")
    for col in ("stage", "seconds", "RTF", "target ≤ 0.01"):
        table.add_column(col)
    for name, t in rows.items():
        rtf = t / audio_s
        table.add_row(name, f"{t:.2f}", f"{rtf:.4f}", "[green]met[/]" if rtf <= 0.01 else "[red]not met[/]")
    console.print(table)
    result = {"cuts": str(cuts_path), "num_cuts": len(cuts), "audio_seconds": audio_s, "codec": what, "threads": 1,
              "rtf": {k: t / audio_s for k, t in rows.items()}, "seconds": rows}
    if out is not None:
        import json

        atomic_write_text(out, json.dumps(result, indent=2) + "\n")
        console.print(f"wrote {out}")
    return result
