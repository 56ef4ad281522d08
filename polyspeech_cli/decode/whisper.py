"""`--asr-judge whisper:DIR`: Whisper as an independent TTS intelligibility judge.

Our own ASR LM as the judge shares the training data (and its blind spots) with the TTS it
judges; Whisper does not. DIR is either

- a CTranslate2 Whisper directory (what faster-whisper loads: model.bin, config.json,
  tokenizer.json), run with `ctranslate2` (`pip install -e '.[whisper]'`), or
- a Hugging Face Whisper model directory (config.json of model_type whisper + weights, saved with
  `save_pretrained`), or the id of one in the local Hugging Face cache, run with `transformers`.

Both read Whisper's own log-mel (transformers' WhisperFeatureExtractor, 16 kHz: audio at other
rates goes through polyspeech_cli.audio.resample) and decode greedily with the prompt
<|startoftranscript|><|LANG|><|transcribe|><|notimestamps|> (LANG: the cut's language when the
model knows it, else the model's own language detection on the CT2 path, English on the other).
One utterance is one 30 s window: longer audio is cut at 30 s (TTS utterances are shorter).
Hypotheses and references are scored in the `asr` normalisation (case-folded, no punctuation),
since Whisper writes cased, punctuated text.

`whisper_decode` writes a decode dir in `polyspeech decode --task asr`'s format (results.jsonl,
hyp.trn, ref.trn), so `score`, `compare` and the results pages read it like any ASR decode.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import time
from pathlib import Path

import numpy as np

from polyspeech_cli.errors import PolyspeechError

PREFIX = "whisper:"
RATE = 16000
MAX_S = 30.0
MAX_TOKENS = 200  # new tokens per utterance (about 30 s of fast speech)
TEXT_CTX = 448  # Whisper's decoder positions (every released size)
INSTALL_FIX = "pip install -e '.[whisper]' (ctranslate2 for a CTranslate2/faster-whisper dir; transformers for a Hugging Face one)"


def is_whisper(spec: str | Path | None) -> bool:
    return spec is not None and str(spec).startswith(PREFIX)


class WhisperJudge:
    """A loaded Whisper model: `transcribe(wave, sr, language)` -> text."""

    def __init__(self, spec: str, threads: int = 0):
        self.spec = spec
        target = spec[len(PREFIX):] if spec.startswith(PREFIX) else spec
        if not target:
            raise PolyspeechError(f"--asr-judge {spec}: give the model after 'whisper:' (a CTranslate2 or Hugging Face Whisper dir)")
        path = Path(target)
        if not path.is_dir():
            path = self._cached_hub_dir(target)
        self.path = path
        if (path / "model.bin").is_file():
            self.backend = "ctranslate2"
            self._load_ct2(threads)
        elif (path / "config.json").is_file():
            self.backend = "transformers"
            self._load_hf(threads)
        else:
            raise PolyspeechError(f"--asr-judge {spec}: {path} holds neither a CTranslate2 Whisper model (model.bin) nor a "
                                  "Hugging Face one (config.json)")
        self._tokenizer = self._load_tokenizer()
        from transformers import WhisperFeatureExtractor

        pre = path / "preprocessor_config.json"
        self._features = (WhisperFeatureExtractor.from_pretrained(str(path)) if pre.is_file()
                          else WhisperFeatureExtractor(feature_size=self.n_mels))
        if self._features.feature_size != self.n_mels:
            raise PolyspeechError(f"{pre}: {self._features.feature_size} mel bins, the model reads {self.n_mels}")

    def describe(self) -> str:
        return f"Whisper `{self.path}` ({self.backend})"

    # ---- loading ------------------------------------------------------------------------------
    @staticmethod
    def _cached_hub_dir(name: str) -> Path:
        if "/" not in name or name.startswith((".", "/")):
            raise PolyspeechError(f"--asr-judge whisper:{name}: no such directory (pass a CTranslate2 or Hugging Face Whisper "
                                  "model directory, or the id of one in the local Hugging Face cache)")
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(name, local_files_only=True))
        except Exception as e:
            raise PolyspeechError(f"--asr-judge whisper:{name}: not a directory and not in the local Hugging Face cache "
                                  f"({type(e).__name__}); download it first or pass a model directory") from e

    def _load_ct2(self, threads: int) -> None:
        if importlib.util.find_spec("ctranslate2") is None:
            raise PolyspeechError(f"--asr-judge {self.spec}: a CTranslate2 Whisper model needs the ctranslate2 package ({INSTALL_FIX})")
        import ctranslate2

        try:
            self._model = ctranslate2.models.Whisper(str(self.path), device="cpu", compute_type="default",
                                                     intra_threads=threads, inter_threads=1)
        except Exception as e:
            raise PolyspeechError(f"--asr-judge {self.spec}: cannot load the CTranslate2 Whisper model ({type(e).__name__}: {e})") from e
        self.n_mels = int(self._model.n_mels)
        self.multilingual = bool(self._model.is_multilingual)

    def _load_hf(self, threads: int) -> None:
        import torch
        from transformers import WhisperForConditionalGeneration

        cfg = json.loads((self.path / "config.json").read_text())
        if cfg.get("model_type") != "whisper":
            raise PolyspeechError(f"--asr-judge {self.spec}: {self.path / 'config.json'} is a '{cfg.get('model_type')}' model, not whisper")
        if threads > 0:
            torch.set_num_threads(threads)
        try:
            self._model = WhisperForConditionalGeneration.from_pretrained(str(self.path)).eval()
        except Exception as e:
            raise PolyspeechError(f"--asr-judge {self.spec}: cannot load the Whisper model ({type(e).__name__}: {e})") from e
        self.n_mels = int(self._model.config.num_mel_bins)
        gen = self.path / "generation_config.json"  # released checkpoints say whether they are multilingual
        flag = json.loads(gen.read_text()).get("is_multilingual") if gen.is_file() else None
        self.multilingual = bool(flag) if flag is not None else int(self._model.config.vocab_size) >= 51865  # Whisper's own rule

    def _load_tokenizer(self):
        from tokenizers import Tokenizer

        path = self.path / "tokenizer.json"
        if not path.is_file():
            raise PolyspeechError(f"--asr-judge {self.spec}: {path} is missing (the Whisper tokenizer; save it beside the model)")
        tok = Tokenizer.from_file(str(path))
        self._eos = tok.token_to_id("<|endoftext|>")
        return tok

    # ---- decoding -----------------------------------------------------------------------------
    def _prompt(self, language: str | None) -> tuple[list[str], bool]:
        """(prompt tokens, detect the language first)."""
        if not self.multilingual:
            return ["<|startoftranscript|>", "<|notimestamps|>"], False
        lang = f"<|{language}|>" if language else None
        if lang is None or self._tokenizer.token_to_id(lang) is None:  # unknown to the model: detect (CT2), else English
            return ["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"], True
        return ["<|startoftranscript|>", lang, "<|transcribe|>", "<|notimestamps|>"], False

    def log_mel(self, wave: np.ndarray, sr: int) -> np.ndarray:
        from polyspeech_cli.audio import resample

        w = np.asarray(wave, dtype=np.float32)
        w = resample(w, int(sr), RATE) if int(sr) != RATE else w
        w = w[: int(MAX_S * RATE)]
        return self._features(w, sampling_rate=RATE, return_tensors="np").input_features.astype(np.float32)  # (1, n_mels, 3000)

    def transcribe(self, wave: np.ndarray, sr: int, language: str | None = None) -> str:
        """Whisper's transcript of one utterance (raw: cased and punctuated)."""
        feats = self.log_mel(wave, sr)
        tokens, detect = self._prompt(language)
        ids = self._ct2(feats, tokens, detect) if self.backend == "ctranslate2" else self._hf(feats, tokens)
        ids = [i for i in ids if i != self._eos]
        return self._tokenizer.decode(ids, skip_special_tokens=True).strip()

    def _ct2(self, feats: np.ndarray, tokens: list[str], detect: bool) -> list[int]:
        import ctranslate2

        sv = ctranslate2.StorageView.from_array(np.ascontiguousarray(feats))
        if detect:
            enc = self._model.encode(sv)
            tokens = [tokens[0], self._model.detect_language(enc)[0][0][0], *tokens[2:]]
            sv = enc
        result = self._model.generate(sv, [tokens], beam_size=1, max_length=min(TEXT_CTX, MAX_TOKENS + len(tokens)), suppress_blank=True)
        return list(result[0].sequences_ids[0])

    def _hf(self, feats: np.ndarray, tokens: list[str]) -> list[int]:
        import torch

        ids = [self._tokenizer.token_to_id(t) for t in tokens]
        if any(i is None for i in ids):
            raise PolyspeechError(f"--asr-judge {self.spec}: its tokenizer lacks the Whisper prompt tokens {tokens}")
        model, out = self._model, []
        limit = min(MAX_TOKENS, int(model.config.max_target_positions) - len(ids))
        with torch.no_grad():
            enc = model.model.encoder(torch.from_numpy(feats)).last_hidden_state
            step, past = torch.tensor([ids]), None
            for _ in range(max(0, limit)):  # greedy, with the decoder's key/value cache
                o = model(encoder_outputs=(enc,), decoder_input_ids=step, past_key_values=past, use_cache=True)
                past = o.past_key_values
                nxt = int(o.logits[0, -1].argmax())
                if nxt == self._eos:
                    break
                out.append(nxt)
                step = torch.tensor([[nxt]])
        return out


@functools.lru_cache(maxsize=2)
def load_whisper(spec: str, threads: int = 0) -> WhisperJudge:
    return WhisperJudge(spec, threads)


def check_whisper(spec: str) -> WhisperJudge:
    """Load the judge now (before anything is computed), or a one-line error naming the fix."""
    if importlib.util.find_spec("transformers") is None:
        raise PolyspeechError(f"--asr-judge {spec}: the Whisper judge needs transformers ({INSTALL_FIX})")
    return load_whisper(spec)


def _norm(text: str) -> str:
    from polyspeech_cli.data.text import normalize_text

    return normalize_text(text or "", "asr")


def whisper_rows(judge: WhisperJudge, cuts) -> list[dict]:
    """One ASR result row per cut with text: {"id", "task": "asr", "ref", "hyp", "language", "raw_hyp"}."""
    from polyspeech_cli.audio import cut_audio
    from polyspeech_cli.lm.tasks import supervision

    rows = []
    for c in cuts:
        s = supervision(c)
        if s is None or not s.text:
            continue
        raw = judge.transcribe(cut_audio(c), c.sampling_rate, s.language)
        rows.append({"id": c.id, "task": "asr", "ref": _norm(s.text), "hyp": _norm(raw), "language": s.language, "raw_hyp": raw})
    return rows


def whisper_decode(spec: str, cuts_path: Path, set_name: str, out_root: Path, log=print, overwrite: bool = False) -> Path:
    """Whisper's ASR of every cut with text in `cuts_path` -> OUT_ROOT/decode_asr_<set_name>/ in `decode`'s
    format (results.jsonl, hyp.trn, ref.trn, and the stamp decode.json naming the input cuts, which the
    waterfall follows back to the TTS decode). A finished dir for the same model and cuts is kept."""
    from polyspeech_cli.data.manifest import read_cuts
    from polyspeech_cli.fileio import atomic_dir
    from polyspeech_cli.stamps import is_fresh, stamp_key, write_stamp

    judge = check_whisper(spec)
    out = Path(out_root) / f"decode_asr_{set_name}"
    key = stamp_key({"task": "asr", "judge": str(judge.path.resolve()), "backend": judge.backend, "max_s": MAX_S}, [Path(cuts_path)])
    if not overwrite and is_fresh(out / "decode.json", key):
        log(f"{out}: already transcribed by {judge.describe()}; kept")
        return out
    cuts = read_cuts(Path(cuts_path), fix="pass the cuts of a TTS decode (DECODE/cuts.jsonl.gz) or a prepared set")
    t0 = time.perf_counter()
    rows = whisper_rows(judge, cuts)
    long = sum(c.duration > MAX_S for c in read_cuts(Path(cuts_path)) if c.supervisions and c.supervisions[0].text)
    if long:
        log(f"note: {long} utterance(s) of {cuts_path} are longer than {MAX_S:.0f} s; Whisper heard their first {MAX_S:.0f} s only")
    if not rows:
        raise PolyspeechError(f"{cuts_path}: no cut has text for the Whisper judge to score against")
    with atomic_dir(out) as tmp:
        (tmp / "results.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        (tmp / "hyp.trn").write_text("".join(f"{r['hyp']} ({r['id']})\n" for r in rows), encoding="utf-8")
        (tmp / "ref.trn").write_text("".join(f"{r['ref']} ({r['id']})\n" for r in rows), encoding="utf-8")
        write_stamp(tmp / "decode.json", key, num_utts=len(rows), judge=spec, seconds=round(time.perf_counter() - t0, 2))
    log(f"{judge.describe()}: transcribed {len(rows)} utterances -> {out}")
    return out
