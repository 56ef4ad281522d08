"""The joint vocabulary: special tokens, task ids, text units, speech tokens and class tokens.

One embedding table serves every task, so every kind of token owns a fixed id range. The layout
is written to `<exp>/vocab.json`; its fingerprint is stored in each checkpoint so that resuming
or decoding with a different vocabulary fails loudly instead of producing garbage.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.lm.tasks import TASKS
from polyspeech_cli.fileio import atomic_path, atomic_write_text

SPECIALS = ("<pad>", "<eos>", "<sep>", "<unk>")
GENDERS = ("M", "F")


@dataclass
class VocabConfig:
    """How text is tokenised: `char` (one unit per character seen in training) or `bpe`."""

    text_unit: str = "char"
    bpe_size: int = 600
    # High coverage keeps rare Mandarin characters as units instead of mapping them to <unk>.
    character_coverage: float = 0.9995


@dataclass
class Vocab:
    """Token ids of every range; `text_units` is the char list or the sentencepiece piece list."""

    text_unit: str
    text_units: list[str]
    languages: list[str]
    speech_type: str | None = None  # discrete speech tokens for TTS output / discrete input
    speech_codebook_size: int = 0
    speech_codebooks: int = 0  # codebooks kept in the vocabulary (1 = first codebook only)
    spm_model: str | None = None  # file name (next to vocab.json) of the sentencepiece model
    _spm: object = field(default=None, repr=False, compare=False)

    # ---- id ranges -------------------------------------------------------------------------
    @property
    def specials(self) -> dict[str, int]:
        names = list(SPECIALS) + [f"<{t}>" for t in TASKS]
        return {n: i for i, n in enumerate(names)}

    @property
    def text_offset(self) -> int:
        return len(SPECIALS) + len(TASKS)

    @property
    def speech_offset(self) -> int:
        return self.text_offset + len(self.text_units)

    @property
    def lang_offset(self) -> int:
        return self.speech_offset + self.speech_codebook_size * self.speech_codebooks

    @property
    def gender_offset(self) -> int:
        return self.lang_offset + len(self.languages)

    @property
    def size(self) -> int:
        return self.gender_offset + len(GENDERS)

    @property
    def pad(self) -> int:
        return 0

    @property
    def eos(self) -> int:
        return 1

    @property
    def sep(self) -> int:
        return 2

    @property
    def unk(self) -> int:
        return 3

    def task_id(self, task: str) -> int:
        return self.specials[f"<{task}>"]

    def lang_id(self, lang: str) -> int | None:
        return self.lang_offset + self.languages.index(lang) if lang in self.languages else None

    def gender_id(self, gender: str | None) -> int | None:
        return self.gender_offset + GENDERS.index(gender) if gender in GENDERS else None

    def class_name(self, token: int) -> str:
        if self.lang_offset <= token < self.gender_offset:
            return self.languages[token - self.lang_offset]
        if self.gender_offset <= token < self.size:
            return GENDERS[token - self.gender_offset]
        return "<none>"

    # ---- text ------------------------------------------------------------------------------
    def encode_text(self, text: str) -> list[int]:
        """Text units of `text` as global ids (unknown characters become <unk>)."""
        if self.text_unit == "char":
            index = self._char_index()
            return [index.get(c, self.unk) for c in text]
        return [self.text_offset + i for i in self._sp().encode(text)]

    def decode_text(self, ids: Iterable[int]) -> str:
        local = [i - self.text_offset for i in ids if self.text_offset <= i < self.speech_offset]
        if self.text_unit == "char":
            return "".join(self.text_units[i] for i in local)
        return self._sp().decode(local)

    def _char_index(self) -> dict[str, int]:
        if self._spm is None:
            self._spm = {c: self.text_offset + i for i, c in enumerate(self.text_units)}
        return self._spm  # type: ignore[return-value]

    def _sp(self):
        if self._spm is None:
            raise PolyspeechError("sentencepiece model not loaded (load the vocabulary with Vocab.load(<exp>/vocab.json))")
        return self._spm

    # ---- speech ----------------------------------------------------------------------------
    def speech_ids(self, tokens) -> list[int]:
        """Global ids of discrete speech tokens: (T,) or (T, K) ints.

        With several codebooks we keep the first `speech_codebooks` of them and flatten frame by
        frame (t0c0, t0c1, t1c0, ...), each codebook in its own id range.
        """
        import numpy as np

        arr = np.asarray(tokens)
        if arr.ndim == 1:
            arr = arr[:, None]
        arr = arr[:, : self.speech_codebooks]
        ids = arr + np.arange(arr.shape[1])[None, :] * self.speech_codebook_size + self.speech_offset
        return ids.reshape(-1).tolist()

    # ---- files -----------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            "size": self.size,
            "specials": self.specials,
            "text_unit": self.text_unit,
            "text_offset": self.text_offset,
            "text_units": self.text_units,
            "spm_model": self.spm_model,
            "speech": {"type": self.speech_type, "offset": self.speech_offset, "codebook_size": self.speech_codebook_size, "codebooks": self.speech_codebooks},
            "languages": {lang: self.lang_offset + i for i, lang in enumerate(self.languages)},
            "genders": {g: self.gender_offset + i for i, g in enumerate(GENDERS)},
        }

    @property
    def fingerprint(self) -> str:
        """Hash of the layout: equal fingerprints mean identical token ids."""
        return hashlib.sha1(json.dumps(self.to_json(), sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]

    def save(self, path: Path) -> None:
        atomic_write_text(Path(path), json.dumps(self.to_json(), indent=1, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Vocab":
        path = Path(path)
        if not path.is_file():
            raise PolyspeechError(f"vocabulary not found: {path} (train first: polyspeech train lm ... --exp-dir {path.parent})")
        d = json.loads(path.read_text(encoding="utf-8"))
        v = cls(
            text_unit=d["text_unit"], text_units=d["text_units"], languages=list(d["languages"]),
            speech_type=d["speech"]["type"], speech_codebook_size=d["speech"]["codebook_size"],
            speech_codebooks=d["speech"]["codebooks"], spm_model=d["spm_model"],
        )
        if v.text_unit == "bpe":
            import sentencepiece as spm

            v._spm = spm.SentencePieceProcessor(model_file=str(path.parent / v.spm_model))
        return v


def build_vocab(
    texts: list[str], languages: Iterable[str], cfg: VocabConfig, out_dir: Path,
    speech_type: str | None = None, codebook_size: int = 0, codebooks: int = 0,
) -> Vocab:
    """Build the vocabulary from training texts (train sentencepiece when `text_unit: bpe`)."""
    if not texts:
        raise PolyspeechError("no training transcripts to build the text vocabulary from (the train cuts carry no `text`)")
    langs = sorted(set(languages))
    if cfg.text_unit == "char":
        units = sorted({c for t in texts for c in t})
        return Vocab("char", units, langs, speech_type, codebook_size, codebooks)
    if cfg.text_unit != "bpe":
        raise PolyspeechError(f"vocab.text_unit must be 'char' or 'bpe', got {cfg.text_unit!r} (fix the config)")
    import sentencepiece as spm

    out_dir = Path(out_dir)
    corpus = out_dir / "text_train.txt"
    atomic_write_text(corpus, "\n".join(texts) + "\n")
    with atomic_path(out_dir / "text.model") as tmp:
        prefix = str(tmp)[: -len(".model")]
        try:
            spm.SentencePieceTrainer.train(
                input=str(corpus), model_prefix=prefix, vocab_size=cfg.bpe_size, model_type="bpe",
                character_coverage=cfg.character_coverage, hard_vocab_limit=False,
                bos_id=-1, eos_id=-1, pad_id=-1, unk_id=0, minloglevel=2, num_threads=1,
            )
        except RuntimeError as e:
            raise PolyspeechError(f"sentencepiece training failed on {corpus}: {str(e).splitlines()[-1]} (raise vocab.bpe_size or use vocab.text_unit: char)") from e
        Path(prefix + ".vocab").unlink(missing_ok=True)
    sp = spm.SentencePieceProcessor(model_file=str(out_dir / "text.model"))
    v = Vocab("bpe", [sp.id_to_piece(i) for i in range(sp.get_piece_size())], langs, speech_type, codebook_size, codebooks, spm_model="text.model")
    v._spm = sp
    return v
