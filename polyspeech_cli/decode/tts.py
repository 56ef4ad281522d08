"""From generated speech tokens to audio: SSET codec decoder -> continuous features -> speech
decoder + vocoder conditioned on a speaker prompt. Also the TTS generation itself (sampling)."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from polyspeech_cli.decode import lm_io
from polyspeech_cli.decode.options import TTSOptions
from polyspeech_cli.decode.search import SamplingConfig, sample
from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.lm.data import to_device
from polyspeech_cli.lm.tasks import make_batch


def find_codec(codec: Path | None, lm_exp: Path, cuts=None) -> Path:
    """The SSET codec model: --codec (file, or exp dir with model.safetensors), else the one the
    cuts' tokens were made with (`<token dir>/sset.json` `source`), else `<exp>/../codec/model.safetensors`."""
    from polyspeech_cli.codec.checkpoint import model_path

    tried = []
    if codec is not None:
        p = model_path(codec)
        if not p.is_file():
            raise PolyspeechError(f"SSET codec model not found: {p} (train one with `polyspeech train codec` or fix --codec)")
        return p
    for cut in itertools.islice(cuts if cuts is not None else (), 1):  # the first cut only: `cuts` may be a lazy CutSet
        if cut.has_custom("sset"):
            arr = cut.custom["sset"]
            storage = Path(getattr(arr, "array", arr).storage_path)  # TemporalArray wraps an Array
            for d in (storage, storage.parent):
                if (d / "sset.json").is_file():
                    src = Path(json.loads((d / "sset.json").read_text())["source"])
                    tried.append(src)
                    if src.is_file():
                        return src
    default = model_path(Path(lm_exp).parent / "codec")
    tried.append(default)
    if default.is_file():
        return default
    raise PolyspeechError(f"TTS needs the SSET codec decoder, not found (looked for {', '.join(map(str, tried))}): "
                          "train it with `polyspeech train codec` or pass --codec DIR")


def find_vocoder(vocoder: Path | None, lm_exp: Path) -> Path:
    """The speech decoder exp dir (holding model.safetensors): --vocoder, else `<exp>/../vocoder`."""
    from polyspeech_cli.vocoder.checkpoint import MODEL

    d = Path(vocoder) if vocoder is not None else Path(lm_exp).parent / "vocoder"
    if not (d / MODEL).is_file():
        raise PolyspeechError(f"TTS needs the speech decoder/vocoder, not found: {d / MODEL} "
                              "(train it with `polyspeech train vocoder`, or pass --vocoder DIR)")
    return d


class SpeechBackend:
    """Codec decoder + vocoder, loaded once and checked against the LM's vocabulary."""

    def __init__(self, lm: lm_io.LoadedLM, codec: Path, vocoder: Path) -> None:
        from polyspeech_cli.codec.checkpoint import load_codec
        from polyspeech_cli.vocoder.synthesize import load_vocoder

        if lm.vocab.speech_type != "sset":
            raise PolyspeechError(f"the LM in {lm.exp_dir} emits '{lm.vocab.speech_type}' tokens; waveform generation needs "
                                  "SSET tokens (train the LM with --speech-tokens sset)")
        self.codec, self.meta = load_codec(codec, "cpu")
        _, size, k = lm_io.speech_layout(lm)
        if self.codec.cfg.codebook_size != size or self.codec.cfg.n_codebooks < k:
            raise PolyspeechError(f"{codec}: codebooks {self.codec.cfg.n_codebooks}x{self.codec.cfg.codebook_size} do not match the "
                                  f"LM's speech tokens ({k}x{size}); pass the codec the tokens were extracted with (--codec)")
        self.vocoder_dir = vocoder
        self.vocoder = load_vocoder(vocoder)
        if self.vocoder.feat_dim != int(self.meta["feat_dim"]):
            raise PolyspeechError(f"{self.vocoder.path} reads {self.vocoder.feat_dim}-dim features but the codec {codec} "
                                  f"outputs {self.meta['feat_dim']}-dim ones: use a vocoder trained on the codec's feature type")
        self.lm = lm
        self.speakers: dict = {}  # speaker embeddings by prompt name (`prompt_name` must name one recording)

    @property
    def sample_rate(self) -> int:
        return int(self.vocoder.cfg.mel.sample_rate)

    @torch.no_grad()
    def to_wave(self, ids: list[int], prompt_wave: np.ndarray, prompt_sr: int, prompt_name: str) -> np.ndarray:
        from polyspeech_cli.vocoder.synthesize import features_to_wave

        codes = lm_io.speech_codes(self.lm, ids)
        if len(codes) == 0:
            raise PolyspeechError(f"{prompt_name}: the LM generated no speech tokens (raise --min-ratio)")
        feats = self.codec.decode(torch.from_numpy(codes)[None])[0].numpy()
        return features_to_wave(feats, prompt_wave, prompt_sr, self.vocoder_dir, prompt_name=prompt_name,
                                frame_shift=float(self.meta["frame_shift"]), speakers=self.speakers)

    @torch.no_grad()
    def oracle_wave(self, oracle: "Oracle", cut, prompt_wave: np.ndarray, prompt_sr: int, prompt_name: str) -> np.ndarray:
        """The audio of one stage of the back end fed the cut's real data instead of the LM's
        tokens: its own mel (the vocoder alone), its features (speech decoder + vocoder) or its
        first K real SSET books (codec decoder + speech decoder + vocoder)."""
        from polyspeech_cli.audio import cut_audio, resample
        from polyspeech_cli.vocoder.mel import wave_to_mel
        from polyspeech_cli.vocoder.synthesize import features_to_wave

        if oracle.kind == "mel":
            sr = self.sample_rate
            mel = wave_to_mel(resample(cut_audio(cut), cut.sampling_rate, sr), self.vocoder.cfg.mel)
            return self.vocoder.mel_to_wave(torch.from_numpy(mel))
        if oracle.kind == "features":
            return features_to_wave(cut.load_features(), prompt_wave, prompt_sr, self.vocoder_dir, prompt_name=prompt_name,
                                    frame_shift=cut.frame_shift, speakers=self.speakers)
        codes = real_books(cut)[:, : oracle.books]
        feats = self.codec.decode(torch.from_numpy(codes.astype(np.int64))[None])[0].numpy()
        return features_to_wave(feats, prompt_wave, prompt_sr, self.vocoder_dir, prompt_name=prompt_name,
                                frame_shift=float(self.meta["frame_shift"]), speakers=self.speakers)

    def check_oracle(self, oracle: "Oracle", cut, cuts_path: Path) -> None:
        """Refuse, before anything is written, a cut that lacks what `oracle` feeds the back end."""
        if oracle.kind == "features":
            if not cut.has_features or cut.num_features != self.vocoder.feat_dim:
                raise PolyspeechError(f"--oracle features: cut '{cut.id}' in {cuts_path} has no {self.vocoder.feat_dim}-dim features "
                                      "(the speech decoder's input); pass the cuts of `extract-tokens --type fbank` (or sset)")
        elif oracle.kind == "books":
            n = self.codec.cfg.n_codebooks
            if oracle.books > n:
                raise PolyspeechError(f"--oracle books:{oracle.books}: the codec has {n} books")
            if not cut.has_custom("sset") or real_books(cut).shape[1] < oracle.books:
                raise PolyspeechError(f"--oracle books:{oracle.books}: cut '{cut.id}' in {cuts_path} lacks {oracle.books} books of "
                                      "real SSET tokens (pass the cuts of `polyspeech extract-tokens --type sset`)")
        elif oracle.kind == "mel" and not cut.has_recording:
            raise PolyspeechError(f"--oracle mel: cut '{cut.id}' in {cuts_path} has no audio")


def real_books(cut) -> np.ndarray:
    """The cut's own SSET codes as (frames, books) int64."""
    codes = np.asarray(cut.load_custom("sset"), dtype=np.int64)
    return codes[:, None] if codes.ndim == 1 else codes


ORACLE_HELP = ("tokens (the LM's books of the real SSET tokens), teacher (the LM's most likely token at each position given the "
               "real history), books:K (the first K real books), features (the real features into the speech decoder) or mel "
               "(the real audio's mel into the vocoder alone)")


@dataclass(frozen=True)
class Oracle:
    """Which real data replaces the LM's sampled tokens in a TTS decode: one row of the back end's
    loss waterfall (README "Speech decoder")."""

    kind: str  # tokens | teacher | books | features | mel
    books: int = 0

    @property
    def from_lm_tokens(self) -> bool:
        """Whether this row's audio comes from LM-layout token ids (the codec decoder and on)."""
        return self.kind in ("tokens", "teacher")

    @classmethod
    def parse(cls, spec: str) -> "Oracle":
        kind, _, k = spec.partition(":")
        if kind in ("tokens", "teacher", "features", "mel") and not k:
            return cls(kind)
        if kind == "books" and k.isdigit() and int(k) >= 1:
            return cls("books", int(k))
        raise PolyspeechError(f"--oracle {spec}: expected {ORACLE_HELP}")


@torch.no_grad()
def teacher_forced_speech(lm: lm_io.LoadedLM, text_ids: list[list[int]], real_ids: list[list[int]]) -> list[list[int]]:
    """The LM's most likely speech token at every position given the *real* token history (one
    forward pass, as in training): what the LM knows of the content without the drift of its own
    samples. Each position is restricted to its codebook's range."""
    off, size, k = lm_io.speech_layout(lm)
    batch = to_device(make_batch(lm.vocab, "tts", [{"text_ids": t} for t in text_ids], real_ids), next(lm.model.parameters()).device)
    h, _, spans = lm.model.hidden(batch)
    out = []
    for i, ((_, end), ids) in enumerate(zip(spans, real_ids)):
        logits = lm.model.llm.lm_head(h[i, end : end + len(ids)]).float()  # position end + j predicts output token j
        book = torch.arange(len(ids), device=logits.device) % k
        local = logits[:, off : off + k * size].reshape(len(ids), k, size)[torch.arange(len(ids)), book]
        out.append((off + book * size + local.argmax(-1)).tolist())
    return out


def generate_speech(lm: lm_io.LoadedLM, text_ids: list[list[int]], opts: TTSOptions, generator: torch.Generator,
                    use_cache: bool = True) -> list[list[int]]:
    """Sample speech token ids for a batch of texts (restricted to the speech range, codebook by codebook)."""
    off, size, k = lm_io.speech_layout(lm)
    rate = lm.rate("tts")
    expected = [max(1, len(t) * rate) for t in text_ids]
    # Lengths in whole frames (k tokens each), so eos only ever follows a complete frame.
    min_new = [k * math.floor(opts.min_ratio * e / k) for e in expected]
    max_new = [k * max(1, math.ceil(opts.max_ratio * e / k)) for e in expected]

    def allowed(t: int) -> tuple[int, int, bool]:
        c = t % k
        return off + c * size, off + (c + 1) * size, c == 0

    batch = lm_io.build_batch(lm, "tts", [{"text_ids": t} for t in text_ids])
    cfg = SamplingConfig(opts.temperature, opts.top_k, opts.top_p, opts.repetition_window, opts.repetition_threshold)
    return sample(lm_io.Session(lm, batch, use_cache), min_new, max_new, allowed, lm.vocab.eos, cfg, generator)
