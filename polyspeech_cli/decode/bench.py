"""`polyspeech bench decode`: KV-cached vs recompute-the-prefix decoding, and the ASR real-time
factor, on one CPU thread. Numbers are reported, never asserted (machines differ)."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from polyspeech_cli.commands import console
from polyspeech_cli.decode import lm_io
from polyspeech_cli.decode.search import greedy
from polyspeech_cli.errors import PolyspeechError


def untrained_lm(config: Path) -> lm_io.LoadedLM:
    """An untrained LM of `config`'s shape with a char vocabulary (speed does not need weights)."""
    from polyspeech_cli.config import load_config
    from polyspeech_cli.lm.train import TrainConfig, build_model
    from polyspeech_cli.lm.vocab import Vocab

    cfg = load_config(config, TrainConfig)
    vocab = Vocab("char", list("abcdefghijklmnopqrstuvwxyz '"), ["de", "en", "es", "fr", "zh"])
    torch.manual_seed(0)
    model = build_model(cfg, vocab, 80).eval()
    model.rates.fill_(0.4)  # about a character per 100 ms of speech at 40 ms per position
    return lm_io.LoadedLM(model, vocab, cfg, Path(tempfile.gettempdir()), Path(config), 80)


def _time(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench(exp_dir: Path | None, cuts: Path | None, config: Path, tokens: int, max_cuts: int, batch_size: int, out: Path | None) -> dict:
    torch.set_num_threads(1)
    lm = lm_io.load_lm(exp_dir) if exp_dir else untrained_lm(config)
    lo, hi = lm_io.output_range(lm, "asr")
    rng = np.random.default_rng(0)
    # 1. A fixed-length output: eos is barred until `tokens` tokens, whatever the weights.
    one = [{"feats": rng.standard_normal((300, 80)).astype(np.float32)}]

    def run(use_cache: bool) -> list[list[int]]:
        return greedy(lm_io.Session(lm, lm_io.build_batch(lm, "asr", one), use_cache), [tokens], lo, hi, lm_io.eos_id(lm), min_new=tokens)

    cached = _time(lambda: run(True), 2)
    recompute = _time(lambda: run(False), 1)
    same = run(True) == run(False)

    # 2. ASR RTF, batched greedy.
    items, seconds = [], 0.0
    if cuts:
        from lhotse import CutSet

        for c in list(CutSet.from_file(cuts))[:max_cuts]:
            if c.supervisions and c.supervisions[0].text:
                items.append(lm_io.cut_item(lm, "asr", c))
                seconds += c.duration
    else:
        for _ in range(max_cuts):
            items.append({"feats": rng.standard_normal((300, 80)).astype(np.float32)})
            seconds += 3.0
    if not items:
        raise PolyspeechError(f"{cuts}: no cut with text to benchmark ASR on")
    from polyspeech_cli.decode.run import transcribe_items

    def asr() -> None:
        for i in range(0, len(items), batch_size):
            transcribe_items(lm, items[i : i + batch_size], 1, 0.0)

    asr_s = _time(asr, 1)
    result = {
        "params_m": lm.model.num_params() / 1e6, "trained": exp_dir is not None, "tokens": tokens,
        "cached_s": cached, "recompute_s": recompute, "speedup": recompute / cached, "cached_equals_recompute": same,
        "cached_ms_per_token": 1000 * cached / tokens,
        "asr_utts": len(items), "asr_audio_s": seconds, "asr_decode_s": asr_s, "asr_rtf": asr_s / seconds, "batch_size": batch_size,
    }
    console.print(f"LM {result['params_m']:.2f} M params ({'trained: ' + str(exp_dir) if exp_dir else 'untrained, ' + str(config)}), 1 CPU thread")
    console.print(f"{tokens}-token output: KV cache {cached:.2f} s ({result['cached_ms_per_token']:.1f} ms/token), "
                  f"recompute {recompute:.2f} s -> {result['speedup']:.1f}x faster (target >= 3x); identical tokens: {same}")
    console.print(f"ASR greedy, batch {batch_size}: {len(items)} utts, {seconds:.1f} s of audio in {asr_s:.2f} s -> RTF {result['asr_rtf']:.4f} (target <= 0.05)")
    if out:
        from polyspeech_cli.fileio import atomic_write_text

        atomic_write_text(Path(out), json.dumps(result, indent=1) + "\n")
    return result
