"""Shallow fusion of the character n-gram (`lm/ngram.py`) with the LM's text tokens: the text of a
token (a character, or a sentencepiece piece whose "▁" is a space) scored after a hypothesis."""

from __future__ import annotations

import numpy as np
import torch

from polyspeech_cli.lm.ngram import EOS, CharNgram
from polyspeech_cli.lm.vocab import Vocab


class NgramFusion:
    """`ctc_prefix.TextLM` over a vocabulary's text tokens (global ids)."""

    def __init__(self, ngram: CharNgram, vocab: Vocab) -> None:
        self.ngram, self.offset = ngram, vocab.text_offset
        self.units = [u.replace("\u2581", " ") for u in vocab.text_units]
        unseen = len(ngram.alphabet)
        # one-character units read the n-gram's next-character distribution; longer pieces are scored one by one
        self.char_slot = np.array([ngram.index.get(u, unseen) if len(u) == 1 else unseen for u in self.units])
        self.pieces = [i for i, u in enumerate(self.units) if len(u) != 1]

    def _text(self, tokens: list[int]) -> str:
        return "".join(self.units[t - self.offset] for t in tokens).lstrip(" ")  # a sentence starts without its piece's space

    def next_logp(self, tokens: list[int]) -> tuple[torch.Tensor, float]:
        """log P(unit | the hypothesis' text) for every text unit (vocabulary order), and log P(end)."""
        history = self._text(tokens)
        dist = self.ngram.next_logp(history)
        out = dist[self.char_slot]  # a copy: the n-gram's cached array stays as it is
        for i in self.pieces:
            out[i] = self.ngram.logp(history, self.units[i] if history else self.units[i].lstrip(" "))
        return torch.from_numpy(out).float(), float(dist[self.ngram.index[EOS]])
