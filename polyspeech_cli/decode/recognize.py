"""ASR, LID and GID over decoding items: the one implementation that training-time evaluation,
`decode`, `transcribe` and `bench decode` all call (items from `lm_io.cut_item` or audio)."""

from __future__ import annotations

import math

import torch

from polyspeech_cli.decode import lm_io
from polyspeech_cli.decode.ctc_prefix import TextLM, joint_beam_nbest
from polyspeech_cli.decode.search import beam_search, class_posterior, greedy
from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.lm.tasks import class_labels, output_range


def asr_max_new(lm: lm_io.LoadedLM, n_in: int, ratio: float) -> int:
    """The longest transcript decoding allows: `ratio` x the training data's text units per speech position."""
    return math.ceil(ratio * lm.rate("asr") * n_in) + 5


def transcribe_ids(lm: lm_io.LoadedLM, items: list[dict], beam_size: int = 1, length_penalty: float = 0.0,
                   max_len_ratio: float = 2.0, use_cache: bool = True, ctc_weight: float = 0.0, text_lm: TextLM | None = None,
                   lm_weight: float = 0.0) -> list[list[int]]:
    """Text ids of a batch of items: greedy (beam 1), beam search, or joint CTC/attention beam search
    (with `text_lm`: shallow fusion of an external text LM, weight `lm_weight`; `decode` checks the
    combination, as fusion runs in the joint search only)."""
    batch = lm_io.build_batch(lm, "asr", items)
    max_new = [asr_max_new(lm, n, max_len_ratio) for n in batch["n_in"]]
    lo, hi = output_range(lm.vocab, "asr")
    eos = lm.vocab.eos
    session = lm_io.Session(lm, batch, use_cache)
    if beam_size <= 1:
        return greedy(session, max_new, lo, hi, eos)
    if ctc_weight <= 0:
        return beam_search(session, max_new, lo, hi, eos, beam_size, length_penalty)
    ctc = lm_io.ctc_logprobs(lm, batch)
    if ctc is None:
        raise PolyspeechError(f"--ctc-weight needs an LM with a CTC head on speech features; {lm.exp_dir} has none (use --ctc-weight 0)")
    nbest = joint_beam_nbest(session, *ctc, lm_io.ctc_class_offset(lm), max_new, lo, hi, eos, beam_size, ctc_weight,
                             lm=text_lm, lm_weight=lm_weight)
    return [max(f, key=lambda h: h.score(length_penalty)).tokens if f else [] for f in nbest]


def transcribe_items(lm: lm_io.LoadedLM, items: list[dict], beam_size: int = 1, length_penalty: float = 0.0,
                     max_len_ratio: float = 2.0, use_cache: bool = True, ctc_weight: float = 0.0, text_lm: TextLM | None = None,
                     lm_weight: float = 0.0) -> list[str]:
    """ASR transcripts of a batch of items (see `transcribe_ids`)."""
    ids = transcribe_ids(lm, items, beam_size, length_penalty, max_len_ratio, use_cache, ctc_weight, text_lm, lm_weight)
    return [lm_io.decode_text(lm, i) for i in ids]


@torch.no_grad()
def ctc_best_path(lm: lm_io.LoadedLM, items: list[dict]) -> list[str] | None:
    """Best-path decoding of the LM's CTC head (None when it has none): the CTC curve of training."""
    ctc = lm_io.ctc_logprobs(lm, lm_io.build_batch(lm, "asr", items))
    if ctc is None:
        return None
    logp, lens = ctc
    off = lm_io.ctc_class_offset(lm)
    out = []
    for row, n in zip(logp.argmax(-1), lens):
        classes = torch.unique_consecutive(row[: int(n)]).tolist()
        out.append(lm_io.decode_text(lm, [c - 1 + off for c in classes if c != 0]))
    return out


def classify_items(lm: lm_io.LoadedLM, task: str, items: list[dict]) -> list[dict[str, float]]:
    """LID/GID posteriors {label: p} over the class tokens (they sum to 1)."""
    batch = lm_io.build_batch(lm, task, items)
    lo, hi = output_range(lm.vocab, task)
    post = class_posterior(lm_io.Session(lm, batch).prefill(), lo, hi)
    labels = class_labels(lm.vocab, task)
    return [{lab: float(p) for lab, p in zip(labels, row)} for row in post]
