"""`polyspeech bench decode`: KV-cached vs recompute-the-prefix decoding, the ASR real-time factor
and, for a trained LM with TTS, the end-to-end TTS real-time factor, on one CPU thread. Numbers are
reported, never asserted (machines differ)."""

from __future__ import annotations

import itertools
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from polyspeech_cli.console import console
from polyspeech_cli.decode import lm_io
from polyspeech_cli.decode.search import greedy
from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.lm.tasks import output_range


def untrained_lm(config: Path) -> lm_io.LoadedLM:
    """An untrained LM of `config`'s shape with a char vocabulary (speed does not need weights)."""
    from polyspeech_cli.config import load_config
    from polyspeech_cli.lm.checkpoint import build_model
    from polyspeech_cli.lm.config import TrainConfig
    from polyspeech_cli.lm.vocab import Vocab

    cfg = load_config(config, TrainConfig)
    vocab = Vocab("char", list("abcdefghijklmnopqrstuvwxyz '"), ["de", "en", "es", "fr", "zh"])
    torch.manual_seed(0)
    model = build_model(cfg, vocab, 80).eval()
    model.rates.fill_(0.4)  # about a character per 100 ms of speech at 40 ms per position
    return lm_io.LoadedLM(model, vocab, cfg, Path(tempfile.gettempdir()), Path(config), 80)


class TransformersCachedSession(lm_io.Session):
    """The cached path before `kv_cache.LeanDecoder`: transformers' own forward with its
    `DynamicCache`, one call per token. Kept here only as the benchmark's "before" row."""

    @torch.no_grad()
    def prefill(self) -> torch.Tensor:
        m = self.m
        x, self.mask, spans, pos = m.embed(self.batch)
        lens = self.mask.sum(1)
        self.next_pos = (pos[torch.arange(x.shape[0]), lens - 1] + 1)[:, None]
        out = m.llm(inputs_embeds=x, attention_mask=m.attention_mask(self.mask, spans), position_ids=pos, use_cache=True)
        self.cache = out.past_key_values
        return out.logits[torch.arange(x.shape[0]), lens - 1].float().cpu()

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(tokens), 1)], dim=1)
        pos, self.next_pos = self.next_pos, self.next_pos + 1
        out = self.m.llm(input_ids=tokens[:, None], attention_mask=self.mask, position_ids=pos, past_key_values=self.cache, use_cache=True)
        self.cache = out.past_key_values
        return out.logits[:, -1].float().cpu()


def _time(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def tts_rtf(lm: lm_io.LoadedLM, cuts_path: Path, codec: Path | None, vocoder: Path | None, max_cuts: int, batch_size: int) -> dict:
    """TTS end to end as `polyspeech decode --task tts` runs it (sampling, SSET decoder, speech
    decoder, Griffin-Lim/HiFi-GAN) on the first `max_cuts` cuts with text: compute s / audio s."""
    from polyspeech_cli.data.manifest import read_cuts
    from polyspeech_cli.decode.run import pick_prompts
    from polyspeech_cli.decode.options import TTSOptions
    from polyspeech_cli.decode.tts import SpeechBackend, find_codec, find_vocoder, generate_speech
    from polyspeech_cli.audio import cut_audio

    cuts = read_cuts(cuts_path, fix="fix --cuts")  # lazy: streamed, only the first `max_cuts` with text are held
    from polyspeech_cli.decode.run import decoding_order

    with_text = (c for c in cuts if c.supervisions and c.supervisions[0].text)
    sel = decoding_order(list(itertools.islice(with_text, max_cuts)), "tts")  # batched as `decode` does
    if not sel:
        raise PolyspeechError(f"{cuts_path}: no cut with text to benchmark TTS on")
    backend = SpeechBackend(lm, find_codec(codec, lm.exp_dir, cuts), find_vocoder(vocoder, lm.exp_dir))
    picked = pick_prompts(cuts, sel)
    prompts = {k: cut_audio(p) for k, p in picked.items()}
    texts = [lm_io.cut_item(lm, "tts", c)["text_ids"] for c in sel]
    gen, lm_s, wave_s, audio_s = torch.Generator().manual_seed(0), 0.0, 0.0, 0.0
    for i in range(0, len(sel), batch_size):
        t = time.perf_counter()
        ids = generate_speech(lm, texts[i : i + batch_size], TTSOptions(), gen)
        lm_s += time.perf_counter() - t
        t = time.perf_counter()
        for c, tok in zip(sel[i : i + batch_size], ids):
            name = f"prompt cut '{picked[c.id].id}'"  # as `decode` names it (the speaker-embedding cache key)
            audio_s += len(backend.to_wave(tok, prompts[c.id], picked[c.id].sampling_rate, name)) / backend.sample_rate
        wave_s += time.perf_counter() - t
    return {"tts_utts": len(sel), "tts_audio_s": audio_s, "tts_lm_s": lm_s, "tts_wave_s": wave_s, "tts_rtf": (lm_s + wave_s) / audio_s}


def bench(exp_dir: Path | None, cuts: Path | None, config: Path, tokens: int, max_cuts: int, batch_size: int, out: Path | None,
          codec: Path | None = None, vocoder: Path | None = None) -> dict:
    torch.set_num_threads(1)
    lm = lm_io.load_lm(exp_dir) if exp_dir else untrained_lm(config)
    lo, hi = output_range(lm.vocab, "asr")
    rng = np.random.default_rng(0)
    # 1. A fixed-length output: eos is barred until `tokens` tokens, whatever the weights.
    one = [{"feats": rng.standard_normal((300, 80)).astype(np.float32)}]

    def run(use_cache: bool, session=lm_io.Session) -> list[list[int]]:
        return greedy(session(lm, lm_io.build_batch(lm, "asr", one), use_cache), [tokens], lo, hi, lm.vocab.eos, min_new=tokens)

    cached = _time(lambda: run(True), 2)
    hf_cached = _time(lambda: run(True, TransformersCachedSession), 2)
    recompute = _time(lambda: run(False), 1)
    same = run(True) == run(False) == run(True, TransformersCachedSession)

    # 2. ASR RTF, batched greedy.
    items, seconds = [], 0.0
    if cuts:
        from polyspeech_cli.data.manifest import read_cuts
        from polyspeech_cli.decode.run import decoding_order

        first = list(itertools.islice(read_cuts(cuts, fix="fix --cuts"), max_cuts))  # streamed: only these are read
        for c in decoding_order(first, "asr"):  # batched as `decode` does
            if c.supervisions and c.supervisions[0].text:
                items.append(lm_io.cut_item(lm, "asr", c))
                seconds += c.duration
    else:
        for _ in range(max_cuts):
            items.append({"feats": rng.standard_normal((300, 80)).astype(np.float32)})
            seconds += 3.0
    if not items:
        raise PolyspeechError(f"{cuts}: no cut with text to benchmark ASR on")
    from polyspeech_cli.decode.recognize import transcribe_items

    def asr() -> None:
        for i in range(0, len(items), batch_size):
            transcribe_items(lm, items[i : i + batch_size], 1, 0.0)

    asr_s = _time(asr, 1)
    result = {
        "params_m": lm.model.num_params() / 1e6, "trained": exp_dir is not None, "tokens": tokens,
        "cached_s": cached, "recompute_s": recompute, "speedup": recompute / cached, "cached_equals_recompute": same,
        "cached_ms_per_token": 1000 * cached / tokens, "transformers_cached_s": hf_cached, "transformers_speedup": recompute / hf_cached,
        "asr_utts": len(items), "asr_audio_s": seconds, "asr_decode_s": asr_s, "asr_rtf": asr_s / seconds, "batch_size": batch_size,
    }
    console.print(f"LM {result['params_m']:.2f} M params ({'trained: ' + str(exp_dir) if exp_dir else 'untrained, ' + str(config)}), 1 CPU thread")
    console.print(f"{tokens}-token output: KV cache {cached:.2f} s ({result['cached_ms_per_token']:.1f} ms/token), "
                  f"recompute {recompute:.2f} s -> {result['speedup']:.1f}x faster (target >= 5x); identical tokens: {same}")
    console.print(f"  before (transformers' DynamicCache, one forward call per token): {hf_cached:.2f} s -> {result['transformers_speedup']:.1f}x")
    console.print(f"ASR greedy, batch {batch_size}: {len(items)} utts, {seconds:.1f} s of audio in {asr_s:.2f} s -> RTF {result['asr_rtf']:.4f} (target <= 0.03)")
    if exp_dir is not None and cuts is not None and "tts" in lm.tasks:
        result |= tts_rtf(lm, cuts, codec, vocoder, max_cuts, batch_size)
        console.print(f"TTS end to end, batch {batch_size}: {result['tts_utts']} utts, {result['tts_audio_s']:.1f} s of audio in "
                      f"{result['tts_lm_s']:.2f} s (LM sampling) + {result['tts_wave_s']:.2f} s (codec, speech decoder, vocoder) "
                      f"-> RTF {result['tts_rtf']:.3f} (target <= 0.1)")
    else:
        console.print("TTS: not measured (needs --exp-dir of an LM trained with tts, and --cuts with audio for the prompts)")
    if out:
        from polyspeech_cli.fileio import atomic_write_text

        atomic_write_text(Path(out), json.dumps(result, indent=1) + "\n")
    return result
