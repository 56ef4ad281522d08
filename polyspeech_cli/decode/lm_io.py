"""Everything decoding needs from the LM, in one place: loading an exp dir, token ranges per task,
building the decoding prefix `<task> input <sep>` and stepping the model (KV-cached or not).

A change of the LM's API (`polyspeech_cli/lm/`) should only ever touch this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from polyspeech_cli.decode.kv_cache import LeanDecoder
from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.lm.config import TrainConfig
from polyspeech_cli.lm.data import normalize_features, to_device
from polyspeech_cli.lm.files import checkpoint_path
from polyspeech_cli.lm.model import PolySpeechLM
from polyspeech_cli.lm.tasks import TASKS, cut_input, make_batch, tts_input_ids
from polyspeech_cli.lm.vocab import Vocab

# Features computed on the fly (transcribe, ASR on synthesized audio) must match training. The LM
# exp dir does not record how its features were made, so `<exp>/features.json` may say it; else
# an 80-dim input is taken to be `extract-tokens --type fbank` (Lhotse Kaldi fbank, 16 kHz, 10 ms).
DEFAULT_FEATURES = {"type": "fbank", "num_mel_bins": 80, "sampling_rate": 16000, "frame_shift": 0.01}


@dataclass
class LoadedLM:
    model: PolySpeechLM  # in eval mode
    vocab: Vocab
    cfg: TrainConfig
    exp_dir: Path
    checkpoint: Path
    feat_dim: int

    @property
    def tasks(self) -> list[str]:
        return list(self.cfg.tasks)

    @property
    def speech_input(self) -> str:
        return self.cfg.data.speech_input

    def rate(self, task: str) -> float:
        """Output tokens per input item measured on the training data (1.0 if unknown)."""
        return float(self.model.rates[TASKS.index(task)])


def load_lm(exp_dir: Path, checkpoint: Path | None = None) -> LoadedLM:
    """Model, vocabulary and config of an LM exp dir; every missing piece is a one-line error."""
    from polyspeech_cli.lm.checkpoint import load_model

    exp_dir = Path(exp_dir)
    path = checkpoint_path(exp_dir, checkpoint)
    try:
        model, vocab, cfg = load_model(exp_dir, path)
    except PolyspeechError:
        raise
    except Exception as e:  # a truncated/garbled file or a config from another version
        raise PolyspeechError(f"{path}: cannot load the LM checkpoint ({type(e).__name__}: {e}); retrain or pass another --checkpoint") from e
    return wrap_model(model, vocab, cfg, exp_dir, path)


def wrap_model(model, vocab, cfg, exp_dir: Path, checkpoint: Path | None = None) -> LoadedLM:
    """A model in memory (e.g. the one being trained) as what decoding takes, with the feature dim
    read off its speech adapter; `exp_dir` holds its features.json, `checkpoint` (default
    `exp_dir`) is only what messages name."""
    exp_dir = Path(exp_dir)
    return LoadedLM(model, vocab, cfg, exp_dir, Path(checkpoint) if checkpoint else exp_dir, _feat_dim(model))


def _feat_dim(model) -> int:
    """Input feature dim of the speech adapter (0: no adapter; -1: cannot tell)."""
    if model.adapter is None:
        return 0
    try:  # stack adapter: Linear(feat_dim * stack, d_model) first
        return model.adapter.proj[0].in_features // model.cfg.stack if model.cfg.adapter == "stack" else -1
    except (AttributeError, IndexError, TypeError):
        return -1


def require_task(lm: LoadedLM, task: str) -> None:
    if task not in lm.tasks:
        raise PolyspeechError(f"the LM in {lm.exp_dir} was trained for {', '.join(lm.tasks)}, not '{task}' (pick another --task or model)")
    if task == "tts" and not lm.vocab.speech_type:
        raise PolyspeechError(f"the LM in {lm.exp_dir} has no speech tokens in its vocabulary (train it with --speech-tokens sset)")


# ---- token layout --------------------------------------------------------------------------------
def speech_layout(lm: LoadedLM) -> tuple[int, int, int]:
    """(offset, codebook size, codebooks per frame) of the speech-token range."""
    v = lm.vocab
    return v.speech_offset, v.speech_codebook_size, max(1, v.speech_codebooks)


def decode_text(lm: LoadedLM, ids: list[int]) -> str:
    return lm.vocab.decode_text(ids)


def speech_codes(lm: LoadedLM, ids: list[int]) -> np.ndarray:
    """Generated global speech ids (flattened frame by frame) -> local codes (T, codebooks)."""
    off, size, k = speech_layout(lm)
    arr = np.asarray(ids[: len(ids) // k * k], dtype=np.int64).reshape(-1, k)
    return arr - off - np.arange(k)[None, :] * size


def text_ids(lm: LoadedLM, text: str, language: str | None, where: str, strict: bool = True) -> list[int]:
    """The TTS input (`<lang>` + text units), refusing what the model cannot read.

    `strict=False` (decoding a test set of a trained language) keeps characters unseen in training
    as <unk>, as ESPnet does, instead of stopping on a cut that is mostly unseen characters.
    """
    v = lm.vocab
    if not text or not text.strip():
        raise PolyspeechError(f"{where}: the text to synthesize is empty (pass some text)")
    if language is not None and language not in v.languages:
        raise PolyspeechError(f"{where}: language '{language}' was not in the LM's training data "
                              f"(it knows {', '.join(v.languages)}); pick one of those or another model")
    if language is None and lm.cfg.data.tts_language_token:
        raise PolyspeechError(f"{where}: this LM reads the language of the text to synthesize: give it "
                              f"(--lang, one of {', '.join(v.languages)})")
    ids = v.encode_text(text)
    unknown = sum(i == v.unk for i in ids)
    if strict and (unknown == len(ids) or unknown > 0.5 * len(ids)):
        raise PolyspeechError(f"{where}: {unknown} of {len(ids)} characters of {text[:40]!r} are unknown to the LM's "
                              "vocabulary (wrong language or script?)")
    return tts_input_ids(v, text, language, lm.cfg.data)


# ---- speech input ----------------------------------------------------------------------------------
def feature_settings(lm: LoadedLM, fbank_only: bool = True) -> dict:
    """How to compute input features on the fly: `<exp>/features.json`, else the fbank default.
    `fbank_only=False` also returns other types (`evaluate` extracts HuBERT with extract-tokens' code)."""
    path = lm.exp_dir / "features.json"
    info = dict(DEFAULT_FEATURES)
    if path.is_file():  # e.g. a copy of the `<feature dir>/fbank.json` that extract-tokens writes
        try:
            info.update(json.loads(path.read_text(encoding="utf-8")))
        except json.JSONDecodeError as e:
            raise PolyspeechError(f"{path}: not valid JSON ({e.msg}); fix or delete it") from None
        if "dim" in info:
            info["num_mel_bins"] = info["dim"]
    elif lm.feat_dim not in (DEFAULT_FEATURES["num_mel_bins"], -1):
        raise PolyspeechError(f"the LM in {lm.exp_dir} reads {lm.feat_dim}-dim features (HuBERT?); on-the-fly features are only "
                              "fbank: extract them first with `polyspeech extract-tokens` and decode that manifest")
    if fbank_only and info["type"] not in ("fbank", "kaldi-fbank"):  # both are Lhotse's kaldi-compatible Fbank, which wave_features runs
        raise PolyspeechError(f"{path}: on-the-fly features are only fbank, not {info['type']!r}; extract them with `polyspeech extract-tokens`")
    return info


def wave_features(lm: LoadedLM, wave: np.ndarray, sr: int) -> np.ndarray:
    """Fbank (T, D) of a mono waveform with the training settings (resampled if needed)."""
    from lhotse import Fbank, FbankConfig

    info = feature_settings(lm)
    target = int(info["sampling_rate"])
    wave = np.asarray(wave, dtype=np.float32)
    if sr != target:
        from polyspeech_cli.audio import resample

        wave = resample(wave, int(sr), target)
    return Fbank(FbankConfig(num_mel_bins=int(info["num_mel_bins"]), device="cpu")).extract(wave, target)


def cut_features(lm: LoadedLM, cut) -> np.ndarray:
    """The cut's stored features, or fbank computed from its audio (e.g. synthesized audio)."""
    if cut.has_features:
        try:
            return np.asarray(cut.load_features(), dtype=np.float32)
        except Exception as e:
            raise PolyspeechError(f"cut '{cut.id}': cannot load its features from {cut.features.storage_path} ({e})") from e
    if not cut.has_recording:
        raise PolyspeechError(f"cut '{cut.id}' has neither features nor audio (pass a manifest from `polyspeech prepare`)")
    from polyspeech_cli.audio import cut_audio

    return wave_features(lm, cut_audio(cut), cut.sampling_rate)


def _normalise(lm: LoadedLM, x: np.ndarray) -> torch.Tensor:
    return normalize_features(torch.as_tensor(np.asarray(x, dtype=np.float32)), lm.cfg.data, lm.model.feat_stats.cpu())


def min_input_frames(lm: LoadedLM) -> int:
    a = lm.model.adapter
    n = 1
    while a is not None and a.out_len(n) < 1:
        n += 1
    return n


# ---- batches ---------------------------------------------------------------------------------------
def build_batch(lm: LoadedLM, task: str, items: list[dict]) -> dict:
    """The decoding batch `<task> input <sep>` of each item (see lm/tasks.py:make_batch)."""
    out_len = lm.model.adapter.out_len if lm.model.adapter is not None else (lambda n: n)
    return make_batch(lm.vocab, task, items, normalise=lambda x: _normalise(lm, x), out_len=out_len)


def cut_item(lm: LoadedLM, task: str, cut) -> dict:
    """A decoding item from a cut (features or tokens, per the LM's `speech_input`)."""
    if task == "tts":
        s = cut.supervisions[0] if cut.supervisions else None
        text_ids(lm, s.text if s else "", s.language if s else None, f"cut '{cut.id}'", strict=False)  # refuse what it cannot read
    elif lm.speech_input == "tokens":
        key = lm.cfg.data.speech_tokens
        if not cut.has_custom(key):
            raise PolyspeechError(f"cut '{cut.id}' has no '{key}' tokens, which this LM reads (run `polyspeech extract-tokens --type {key}`)")
    item = cut_input(lm.vocab, task, lm.cfg.data, cut, load_features=lambda c: cut_features(lm, c))
    if "feats" in item and item["feats"].shape[0] < min_input_frames(lm):
        raise PolyspeechError(f"cut '{cut.id}' is too short ({item['feats'].shape[0]} frames) for the LM's speech adapter")
    return item


# ---- stepping the model ----------------------------------------------------------------------------
class Session:
    """Incremental decoding of N rows `<task> input <sep>` + generated tokens.

    Rows are right-padded to a common prefix length; generated tokens follow the padding, with
    the padding masked out and explicit (possibly fractional, aligned) RoPE positions, so each
    row computes exactly what it would alone. The cached path is `kv_cache.LeanDecoder`;
    `use_cache=False` recomputes the whole sequence with the transformers forward at every step
    (the reference the cache is checked and benchmarked against).
    """

    def __init__(self, lm: LoadedLM, batch: dict, use_cache: bool = True) -> None:
        self.m, self.use_cache = lm.model, use_cache
        self.device = next(lm.model.parameters()).device
        self.batch = to_device(batch, self.device)

    @torch.no_grad()
    def prefill(self) -> torch.Tensor:
        """Logits (N, V) for the first output token."""
        m = self.m
        x, mask, spans, pos = m.embed(self.batch)
        lens = mask.sum(1)
        rows = torch.arange(x.shape[0], device=self.device)
        self.next_pos = (pos[rows, lens - 1] + 1)[:, None]
        attention = m.attention_mask(mask, spans)
        if self.use_cache:
            self.decoder = LeanDecoder(m.llm)
            logits, self.cache = self.decoder.prefill(x, mask, attention, pos)
            return logits.float().cpu()
        self.x, self.pos, self.mask, self.spans = x, pos, mask, spans
        out = m.llm(inputs_embeds=x, attention_mask=attention, position_ids=pos, use_cache=False)
        return out.logits[rows, lens - 1].float().cpu()

    def select(self, idx: torch.Tensor) -> None:
        """Keep/duplicate/reorder rows (beam search): row i becomes old row idx[i]."""
        idx = idx.to(self.device)
        self.next_pos = self.next_pos[idx]
        if self.use_cache:
            self.cache.select(idx)
        else:
            self.x, self.pos, self.mask = self.x[idx], self.pos[idx], self.mask[idx]
            self.spans = [self.spans[int(i)] for i in idx]

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per row (N,); logits (N, V) for the next one."""
        m = self.m
        tokens = tokens.to(self.device)
        pos = self.next_pos
        self.next_pos = self.next_pos + 1
        if self.use_cache:
            return self.decoder.step(tokens, pos, self.cache).float().cpu()
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(tokens), 1)], dim=1)
        self.x = torch.cat([self.x, m.llm.get_input_embeddings()(tokens[:, None])], dim=1)
        self.pos = torch.cat([self.pos, pos], dim=1)
        out = m.llm(inputs_embeds=self.x, attention_mask=m.attention_mask(self.mask, self.spans), position_ids=self.pos, use_cache=False)
        return out.logits[:, -1].float().cpu()


@torch.no_grad()
def ctc_logprobs(lm: LoadedLM, batch: dict) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The CTC head's (N, T, n_text + 1) log-probs over the speech positions (class 0 = blank,
    class i = text id text_offset + i - 1) and their lengths; None when the LM has no CTC head.

    One extra forward pass over the prefixes (the decoding cache holds no hidden states), or only
    over the speech encoder when the LM has one.
    """
    m = lm.model
    if m.ctc_head is None or batch.get("feats") is None:
        return None
    logp, lens = m.batch_ctc_logprobs(to_device(batch, next(m.parameters()).device))
    return logp.float().cpu(), lens.cpu()


def ctc_class_offset(lm: LoadedLM) -> int:
    """Text id of CTC class 1 (class = id - offset + 1)."""
    return lm.model.text_offset
