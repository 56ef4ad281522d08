"""Search over a `Session`: batched greedy, beam search, sampling, and class posteriors.

Every function works on token ranges only (no knowledge of the LM), so it is testable with any
object that has `prefill()`, `step(tokens)` and `select(rows)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

NEG = float("-inf")


def restrict(logits: torch.Tensor, lo: int, hi: int, eos: int | None) -> torch.Tensor:
    """Logits with every id outside [lo, hi) (and other than `eos`, if given) set to -inf."""
    keep = torch.full_like(logits, NEG)
    keep[:, lo:hi] = 0
    if eos is not None:
        keep[:, eos] = 0
    return logits + keep


def class_posterior(logits: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """(N, hi - lo) probabilities renormalised over the class tokens only."""
    return logits[:, lo:hi].float().softmax(-1)


def greedy(session, max_new: list[int], lo: int, hi: int, eos: int, min_new: int = 0) -> list[list[int]]:
    """Batched greedy decoding, outputs restricted to [lo, hi) + eos; a row stops at eos or max_new
    (eos is barred for the first `min_new` tokens, e.g. to benchmark fixed-length outputs)."""
    logits = session.prefill()
    n = logits.shape[0]
    out: list[list[int]] = [[] for _ in range(n)]
    done = torch.tensor([m <= 0 for m in max_new])
    for t in range(max(max_new, default=0)):
        tok = restrict(logits, lo, hi, eos if t >= min_new else None).argmax(-1)
        if _append(tok, out, done, eos, max_new):
            break
        logits = session.step(torch.where(done, torch.full_like(tok, eos), tok))  # finished rows idle on eos
    return out


@dataclass
class Hyp:
    tokens: list[int]
    logp: float

    def score(self, length_penalty: float) -> float:
        """GNMT-style length normalisation: logp / (tokens + eos) ** length_penalty (0 = raw logp)."""
        return self.logp / (len(self.tokens) + 1) ** length_penalty


def beam_search(session, max_new: list[int], lo: int, hi: int, eos: int, beam: int, length_penalty: float = 0.0) -> list[list[int]]:
    """The best hypothesis of each row of `beam_nbest` (ranked by length-normalised logp)."""
    return [max(f, key=lambda h: h.score(length_penalty)).tokens if f else [] for f in beam_nbest(session, max_new, lo, hi, eos, beam)]


def beam_nbest(session, max_new: list[int], lo: int, hi: int, eos: int, beam: int) -> list[list[Hyp]]:
    """Batched beam search (Whisper-style): K running hypotheses per utterance, refilled each step
    from the best non-eos continuations; an eos continuation ranked above the K-th running one is
    a finished hypothesis; an utterance is done with K finished ones (or at max_new, when the
    running ones join them). With K = 1 this is exactly greedy decoding.

    The KV cache follows the hypotheses: `session.select(rows)` reorders it every step.
    """
    logp = restrict(session.prefill(), lo, hi, eos).log_softmax(-1)
    b, v = logp.shape
    k = beam
    session.select(torch.arange(b).repeat_interleave(k))
    logp = logp.repeat_interleave(k, 0)
    scores = torch.full((b, k), NEG)
    scores[:, 0] = 0.0  # at the start all K rows are the same prefix: expand only one
    seqs: list[list[list[int]]] = [[[] for _ in range(k)] for _ in range(b)]
    finished: list[list[Hyp]] = [[] for _ in range(b)]
    done = [m <= 0 for m in max_new]
    for t in range(max(max_new, default=0)):
        cand = (scores.reshape(-1, 1) + logp).reshape(b, k * v)
        top_s, top_i = cand.topk(min(2 * k, k * v), dim=-1)
        rows, toks, new_scores, new_seqs = [], [], torch.full((b, k), NEG), []
        for u in range(b):
            alive: list[tuple[int, int, float]] = []
            if not done[u]:
                for s, i in zip(top_s[u].tolist(), top_i[u].tolist()):
                    if s == NEG:
                        break
                    src, tok = divmod(i, v)
                    if tok == eos:
                        if len(finished[u]) < k:
                            finished[u].append(Hyp(seqs[u][src], s))
                    else:
                        alive.append((src, tok, s))
                        if len(alive) == k:
                            break
                if len(finished[u]) >= k or not alive:
                    done[u] = True
                elif t + 1 >= max_new[u]:  # out of length: the running hypotheses count as finished
                    finished[u] += [Hyp(seqs[u][src] + [tok], s) for src, tok, s in alive]
                    done[u] = True
            if done[u]:
                alive = []
            alive += [(0, eos, NEG)] * (k - len(alive))  # idle rows keep the shape
            new_seqs.append([seqs[u][src] + [tok] if s != NEG else [] for src, tok, s in alive])
            for j, (src, tok, s) in enumerate(alive):
                rows.append(u * k + src)
                toks.append(tok)
                new_scores[u, j] = s
        if all(done):
            break
        seqs, scores = new_seqs, new_scores
        session.select(torch.tensor(rows))
        logp = restrict(session.step(torch.tensor(toks)), lo, hi, eos).log_softmax(-1)
    return finished


@dataclass
class SamplingConfig:
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    # Repetition-aware sampling (VALL-E 2): a token drawn with the filters above that already makes
    # more than `repetition_threshold` of the row's last `repetition_window` tokens is drawn again
    # from the whole distribution (temperature only). Near-greedy filters then cannot loop.
    repetition_window: int = 0  # 0 = off
    repetition_threshold: float = 0.1


def filter_logits(logits: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """Temperature, then top-k, then nucleus (top-p) filtering; -inf stays -inf."""
    logits = logits / max(cfg.temperature, 1e-5)
    if cfg.top_k > 0:
        kth = logits.topk(min(cfg.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, NEG)
    if cfg.top_p < 1.0:
        logits = logits.masked_fill(~nucleus(logits.softmax(-1), cfg.top_p), NEG)
    return logits


def nucleus(probs: torch.Tensor, top_p: float, first_k: int = 64) -> torch.Tensor:
    """(N, V) mask of each row's nucleus: a token stays unless the more likely tokens before it
    already cover top_p (the best one always stays). Sorting only the top k (grown until they cover
    top_p in every row) gives the full sort's mask at a fraction of its cost (1.2 ms per step over
    2554 tokens on one CPU thread): every token past them has more than top_p before it."""
    k = min(first_k, probs.shape[-1])
    while True:
        top, idx = probs.topk(k, dim=-1)
        if k == probs.shape[-1] or bool((top.sum(-1) > top_p).all()):
            break
        k = min(probs.shape[-1], 4 * k)
    keep = top.cumsum(-1) - top <= top_p
    return torch.zeros_like(probs, dtype=torch.bool).scatter(-1, idx, keep)


def sample(session, min_new: list[int], max_new: list[int], allowed: Callable[[int], tuple[int, int, bool]], eos: int,
           cfg: SamplingConfig, generator: torch.Generator | None = None) -> list[list[int]]:
    """Batched sampling. `allowed(t)` -> (lo, hi, eos_ok) for output position t (e.g. the
    codebook of a flattened multi-codebook frame); eos is also barred before min_new tokens."""
    logits = session.prefill()
    n = logits.shape[0]
    out: list[list[int]] = [[] for _ in range(n)]
    done = torch.tensor([m <= 0 for m in max_new])
    min_new_t = torch.tensor(min_new)
    recent = torch.full((n, cfg.repetition_window), -1, dtype=torch.long)  # each row's last tokens (-1 = none yet)
    for t in range(max(max_new, default=0)):
        lo, hi, eos_ok = allowed(t)
        logits = restrict(logits, lo, hi, eos)
        if eos_ok:  # eos only for the rows past their min_new
            logits[:, eos] = logits[:, eos].masked_fill(min_new_t > t, NEG)
        else:
            logits[:, eos] = NEG
        probs = filter_logits(logits, cfg).softmax(-1)
        tok = torch.multinomial(probs, 1, generator=generator)[:, 0]
        if cfg.repetition_window > 0:
            repeated = (recent == tok[:, None]).sum(1) > cfg.repetition_threshold * cfg.repetition_window
            # Drawn at every step and used only where a row repeats: the generator advances the same
            # whatever repeats, so one row's repetition does not shift the other rows' draws.
            anew = torch.multinomial((logits / max(cfg.temperature, 1e-5)).softmax(-1), 1, generator=generator)[:, 0]
            tok = torch.where(repeated & (tok != eos), anew, tok)
            recent = torch.cat([recent[:, 1:], tok[:, None]], dim=1)
        if _append(tok, out, done, eos, max_new):
            break
        logits = session.step(torch.where(done, torch.full_like(tok, eos), tok))  # finished rows idle on eos
    return out


def _append(tok: torch.Tensor, out: list[list[int]], done: torch.Tensor, eos: int, max_new: list[int]) -> bool:
    """Add this step's token to each unfinished row (eos or the length limit finishes it); True when all are done."""
    for i in range(len(out)):
        if not done[i]:
            if int(tok[i]) == eos:
                done[i] = True
            else:
                out[i].append(int(tok[i]))
                done[i] = len(out[i]) >= max_new[i]
    return bool(done.all())
