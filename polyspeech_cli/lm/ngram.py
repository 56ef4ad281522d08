"""A character n-gram language model of the training transcripts, for shallow fusion in ASR decoding.

ESPnet's recipes train an external LM on the training text and add `lm_weight * log P_lm` to the
joint CTC/attention score of every hypothesis. Ours is a count model: interpolated Witten-Bell
smoothing over characters (Witten & Bell 1991; the smoothing SRILM offers as `-wbdiscount`):

    P(c | h) = (C(h c) + T(h) P(c | h')) / (C(h) + T(h))

with h' = h minus its oldest character, T(h) = the number of distinct characters seen after h,
and a uniform distribution over the characters seen (+ the end symbol) below the unigram. Being
over characters, it scores any text unit (a character or a sentencepiece piece) as the sum of its
characters' log probabilities, so one n-gram serves every vocabulary of the LM.

The file (`ngram.json`) keeps the order and the training transcripts as they are; the counts are rebuilt
on load (about a second for a few hours of transcripts), so the file stays small and readable.
"""

from __future__ import annotations

import json
from collections import defaultdict
from functools import lru_cache
from pathlib import Path

import numpy as np

from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.fileio import atomic_write_text

BOS, EOS = "\x02", "\x03"  # sentence start (history padding) and end: characters no transcript holds
KIND = "polyspeech-char-ngram"


class CharNgram:
    """Interpolated Witten-Bell character n-gram (see the module doc)."""

    def __init__(self, texts: list[str], order: int = 6) -> None:
        if order < 1 or not texts:
            raise ValueError(f"an n-gram needs order >= 1 (got {order}) and at least one text (got {len(texts)})")
        self.order, self.texts = order, texts
        # counts[h][c]: how often character c followed the history h (len(h) < order)
        self.counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for text in texts:
            padded = BOS * (order - 1) + text + EOS
            for i in range(order - 1, len(padded)):
                for n in range(order):
                    self.counts[padded[i - n:i]][padded[i]] += 1
        self.counts = {h: dict(nxt) for h, nxt in self.counts.items()}
        self.totals = {h: sum(nxt.values()) for h, nxt in self.counts.items()}
        # the alphabet (characters seen, the end symbol among them) + 1 slot for any character never seen
        self.alphabet = sorted(self.counts.get("", {}))
        self.index = {c: i for i, c in enumerate(self.alphabet)}
        self.uniform = 1.0 / (len(self.alphabet) + 1)
        self._dist = lru_cache(maxsize=1 << 16)(self._distribution)

    def _distribution(self, history: str) -> np.ndarray:
        """log P(. | history) over `alphabet` + [a character never seen]: the module doc's recursion,
        from the empty history up to the longest suffix of `history` that was seen."""
        p = np.full(len(self.alphabet) + 1, self.uniform)
        for n in range(len(history) + 1):  # the empty history first, then longer ones
            h = history[len(history) - n:]
            nxt = self.counts.get(h)
            if nxt:
                types = len(nxt)
                p *= types
                for c, count in nxt.items():
                    p[self.index[c]] += count
                p /= self.totals[h] + types
        return np.log(p)

    def next_logp(self, text: str) -> np.ndarray:
        """log P(c | text) for every c of `alphabet` + [a character never seen] (shared: do not modify)."""
        return self._dist(self.context(text))

    def context(self, text: str) -> str:
        """The history the next character is predicted from (sentence start padded)."""
        padded = BOS * (self.order - 1) + text[-self.order:]
        return padded[len(padded) - self.order + 1:]

    def logp(self, history: str, piece: str) -> float:
        """log P(piece | history): the sum over the piece's characters, each after what precedes it."""
        total = 0.0
        for char in piece:
            total += float(self.next_logp(history)[self.index.get(char, len(self.alphabet))])
            history += char
        return total

    def logp_end(self, history: str) -> float:
        """log P(end of sentence | history)."""
        return float(self.next_logp(history)[self.index[EOS]])

    def save(self, path: Path) -> None:
        atomic_write_text(path, json.dumps({"kind": KIND, "order": self.order, "texts": self.texts}, ensure_ascii=False))

    @classmethod
    def load(cls, path: Path) -> CharNgram:
        path = Path(path)
        if not path.is_file():
            raise PolyspeechError(f"n-gram LM not found: {path} (train one with `polyspeech train ngram --train-cuts ... --out {path}`)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("kind") != KIND:
                raise ValueError(f"kind {data.get('kind')!r}, expected {KIND!r}")
            return cls([str(t) for t in data["texts"]], int(data["order"]))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise PolyspeechError(f"{path} is not a polyspeech n-gram LM ({e}); retrain it with `polyspeech train ngram`") from e


def train_ngram(train_cuts: Path, out: Path, order: int = 6, log=print) -> Path:
    """`polyspeech train ngram`: the n-gram of the transcripts of `train_cuts` -> `out` (skipped when
    its stamp `out`.done holds the same order and cuts file)."""
    from polyspeech_cli.errors import require_file
    from polyspeech_cli.stamps import is_fresh, stamp_key, write_stamp

    if order < 1:
        raise PolyspeechError(f"--order must be >= 1 (got {order})")
    out, fix = Path(out), "run `polyspeech prepare` first, or fix --train-cuts"
    stamp, key = out.with_name(out.name + ".done"), stamp_key({"order": order}, [require_file(Path(train_cuts), "train cuts", fix)])
    if is_fresh(stamp, key):  # before the manifest reader (Lhotse, torch) is imported
        log(f"{out} is already trained on these cuts with order {order}: nothing to do")
        return out
    from polyspeech_cli.data.manifest import read_cuts
    from polyspeech_cli.lm.tasks import supervision

    cuts = read_cuts(train_cuts, "train cuts", fix)
    texts = [s.text for s in (supervision(c) for c in cuts) if s is not None and s.text]
    if not texts:
        raise PolyspeechError(f"{train_cuts}: no cut has a transcript to train an n-gram on (pass the ASR training cuts)")
    out.parent.mkdir(parents=True, exist_ok=True)
    CharNgram(texts, order).save(out)
    write_stamp(stamp, key, outputs=[out], texts=len(texts))
    log(f"{order}-gram character LM of {len(texts)} transcripts -> {out}")
    return out
