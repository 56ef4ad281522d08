"""Joint CTC/attention beam search (ESPnet's hybrid decoding, Watanabe et al. 2017).

Each hypothesis carries the CTC prefix probability of its tokens: the probability that the CTC
head's frame sequence *starts* with that prefix (the forward variables r_t^n, r_t^b over all
frames). Candidates are scored (1 - w) log P_att + w log P_ctc_prefix; only the `pre_beam` best
attention candidates of each hypothesis get the (costlier) CTC score, as in ESPnet.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch

from polyspeech_cli.decode.search import NEG, Hyp, restrict


def _lae(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.logaddexp(a, b)


class CTCPrefixScorer:
    """CTC prefix scores for M hypotheses at once. `x` (M, T, C) log-probs (class 0 = blank),
    padded frames must be log P(blank) = 0 and -inf elsewhere (see `pad_logprobs`)."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def initial(self) -> torch.Tensor:
        """(M, T, 2) forward variables (non-blank, blank) of the empty prefix."""
        r = torch.full((*self.x.shape[:2], 2), NEG)
        r[:, :, 1] = self.x[:, :, 0].cumsum(1)
        return r

    def extend(self, xc: torch.Tensor, xb: torch.Tensor, r_prev: torch.Tensor, last: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Prefix g (state r_prev (M, T, 2), last class `last`, -1 if empty) + class c (M,), with
        xc (M, T) = log P(c) and xb (M, T) = log P(blank) per frame: returns (log prefix
        probability (M,), new state (M, T, 2))."""
        t_max = xc.shape[1]
        phi = _lae(r_prev[:, :, 0], r_prev[:, :, 1])
        same = (c == last)[:, None]
        phi = torch.where(same, r_prev[:, :, 1], phi)  # a repeated label needs a blank in between
        r = torch.full_like(r_prev, NEG)
        r[:, 0, 0] = torch.where(last < 0, xc[:, 0], torch.full_like(xc[:, 0], NEG))
        psi = r[:, 0, 0].clone()
        for t in range(1, t_max):
            r[:, t, 0] = _lae(r[:, t - 1, 0], phi[:, t - 1]) + xc[:, t]
            r[:, t, 1] = _lae(r[:, t - 1, 0], r[:, t - 1, 1]) + xb[:, t]
            psi = _lae(psi, phi[:, t - 1] + xc[:, t])
        return psi, r

    @staticmethod
    def final(r: torch.Tensor) -> torch.Tensor:
        """log P_ctc(g | x) of complete hypotheses (prefix + eos)."""
        return _lae(r[:, -1, 0], r[:, -1, 1])


def pad_logprobs(logp: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """Frames past each row's length: blank with probability 1 (they change no score)."""
    x = logp.clone()
    pad = torch.arange(x.shape[1])[None, :] >= lens[:, None]
    x[pad] = NEG
    x[..., 0][pad] = 0.0
    return x


class TextLM(Protocol):
    """An external text LM for shallow fusion (`decode.lm_fusion.NgramFusion`): after a hypothesis'
    tokens, log P of each text token (vocabulary order) and log P of the sentence ending there."""

    def next_logp(self, tokens: list[int]) -> tuple[torch.Tensor, float]: ...


def joint_beam_nbest(session, ctc_logp: torch.Tensor, ctc_lens: torch.Tensor, text_offset: int, max_new: list[int], lo: int, hi: int,
                     eos: int, beam: int, weight: float, pre_beam: int | None = None, lm: TextLM | None = None,
                     lm_weight: float = 0.0) -> list[list[Hyp]]:
    """Like `search.beam_nbest`, ranking by the joint score; Hyp.logp holds the joint score. With
    `lm`, ESPnet's shallow fusion: the score adds `lm_weight` x the text LM's log probability."""
    logp_att = restrict(session.prefill(), lo, hi, eos).log_softmax(-1)
    b, v = logp_att.shape
    k = beam
    p = min(pre_beam or math.ceil(1.5 * k), hi - lo)
    x = pad_logprobs(ctc_logp, ctc_lens).repeat_interleave(k, 0)  # (b*k, T, C)
    scorer = CTCPrefixScorer(x)
    state = scorer.initial()
    last = torch.full((b * k,), -1, dtype=torch.long)
    session.select(torch.arange(b).repeat_interleave(k))
    logp_att = logp_att.repeat_interleave(k, 0)
    att = torch.zeros(b * k)
    fused = torch.zeros(b * k)  # lm_weight x the text LM's log P of each running hypothesis
    alive_mask = torch.zeros(b, k, dtype=torch.bool)
    alive_mask[:, 0] = True
    seqs: list[list[list[int]]] = [[[] for _ in range(k)] for _ in range(b)]
    finished: list[list[Hyp]] = [[] for _ in range(b)]
    done = [m <= 0 for m in max_new]
    for t in range(max(max_new, default=0)):
        # Candidates: the pre-beam best text tokens of each row by attention (+ eos), CTC-scored. (A
        # pre-beam by attention + text LM, as ESPnet's, was worse on the egs/mini dev split: README, "Decoding".)
        cand_tok = logp_att[:, lo:hi].topk(p, dim=-1).indices + lo  # (b*k, p)
        rows = torch.arange(b * k).repeat_interleave(p)
        cls = cand_tok - text_offset + 1  # text id -> CTC class
        xc = x.gather(2, cls[:, None, :].expand(-1, x.shape[1], -1)).transpose(1, 2).reshape(b * k * p, -1)
        psi, new_state = scorer.extend(xc, x[rows, :, 0], state[rows], last[rows], cls.reshape(-1))
        psi = psi.view(b * k, p)
        cand_att = att[:, None] + logp_att.gather(1, cand_tok)
        joint = (1 - weight) * cand_att + weight * psi
        eos_ctc = scorer.final(state)
        eos_att = att + logp_att[:, eos]
        eos_joint = (1 - weight) * eos_att + weight * eos_ctc
        if lm is not None and lm_weight:
            nxt, end = zip(*(lm.next_logp(seqs[r // k][r % k]) for r in range(b * k)))
            cand_lm = fused[:, None] + lm_weight * torch.stack(nxt).gather(1, cand_tok - lo)
            joint = joint + cand_lm
            eos_joint = eos_joint + fused + lm_weight * torch.tensor(end)
        else:
            cand_lm = fused[:, None].expand(-1, p)
        joint = torch.where(alive_mask.view(-1, 1), joint, torch.full_like(joint, NEG))
        eos_joint = torch.where(alive_mask.view(-1), eos_joint, torch.full_like(eos_joint, NEG))
        # Per utterance: candidates (row, slot) with slot p = eos, best first.
        allj = torch.cat([joint, eos_joint[:, None]], dim=1).view(b, k * (p + 1))
        order = allj.argsort(dim=1, descending=True)
        sel_rows, sel_slot, new_alive = [], [], torch.zeros(b, k, dtype=torch.bool)
        for u in range(b):
            chosen: list[tuple[int, int]] = []
            if not done[u]:
                for flat in order[u].tolist():
                    s = float(allj[u, flat])
                    if s == NEG:
                        break
                    src, slot = divmod(flat, p + 1)
                    row = u * k + src
                    if slot == p:
                        if len(finished[u]) < k:
                            finished[u].append(Hyp(seqs[u][src], s))
                    else:
                        chosen.append((row, slot))
                        if len(chosen) == k:
                            break
                if len(finished[u]) >= k or not chosen:
                    done[u] = True
                elif t + 1 >= max_new[u]:
                    finished[u] += [Hyp(seqs[u][r - u * k] + [int(cand_tok[r, sl])], float(joint[r, sl])) for r, sl in chosen]
                    done[u] = True
            if done[u]:
                chosen = []
            new_alive[u, : len(chosen)] = True
            chosen += [(u * k, 0)] * (k - len(chosen))  # idle rows keep the shape
            sel_rows += [r for r, _ in chosen]
            sel_slot += [sl for _, sl in chosen]
        if all(done):
            break
        idx, slot = torch.tensor(sel_rows), torch.tensor(sel_slot)
        toks = cand_tok[idx, slot]
        flat = idx * p + slot
        seqs = [[seqs[u][int(idx[u * k + j]) - u * k] + [int(toks[u * k + j])] for j in range(k)] for u in range(b)]
        att, fused = cand_att[idx, slot], cand_lm[idx, slot]
        state, last = new_state[flat], toks - text_offset + 1
        alive_mask = new_alive
        session.select(idx)
        logp_att = restrict(session.step(torch.where(new_alive.view(-1), toks, torch.full_like(toks, eos))), lo, hi, eos).log_softmax(-1)
    return finished
