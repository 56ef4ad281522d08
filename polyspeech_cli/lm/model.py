"""The PolySpeech LM: a Llama-family decoder (from `transformers`) plus our speech adapter.

Every task is one sequence `<task> input <sep> output <eos>`. Token inputs go through the
embedding table; continuous speech frames go through the adapter and are placed in the same
sequence via `inputs_embeds`. The loss is next-token cross-entropy on the output part only,
plus (optionally) a CTC loss on the hidden states at speech positions of ASR examples: CTC
forces a monotonic frame-to-text alignment early on, which a small decoder-only LM otherwise
takes a long time to discover on its own (see the README for the measurements).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from polyspeech_cli.lm.tasks import ALIGNED_TASKS, CLASS_TASKS, TASKS

if TYPE_CHECKING:
    from transformers import LlamaConfig

# `transformers` is imported where a model is built, not at module import: its Llama module pulls in
# generation utilities, scikit-learn and torch._dynamo (~3 s), which a verb that only finds its work
# already done (a re-run recipe: one process per verb) should not pay.


@dataclass
class ModelConfig:
    """Decoder size and speech adapter; `vocab_size` and `feat_dim` are filled in from the data."""

    d_model: int = 256
    n_layers: int = 6
    n_heads: int = 4
    n_kv_heads: int = 4
    d_ff: int = 768
    dropout: float = 0.0
    max_positions: int = 4096
    rope_theta: float = 10000.0
    tie_embeddings: bool = True
    adapter: str = "stack"  # stack: concatenate `stack` frames + MLP; conv2d: strided 3x3 convs
    stack: int = 4  # feature frames per speech position; conv2d: 2, 4 or 8 (1, 2 or 3 stride-2 convs)
    # Speech encoder: this many bidirectional Transformer layers over the adapter's output (as the
    # paper's HuBERT input is a bidirectional encoder's); the auxiliary CTC head then reads the
    # encoder's states instead of the decoder's causal ones. 0 = the adapter feeds the decoder directly.
    encoder_layers: int = 0
    ctc_weight: float = 0.3  # 0 disables the auxiliary CTC head
    # Prefix LM: `<task> input` attend to each other in both directions (an encoder over the
    # input, as in encoder-decoder ASR); `<sep> output` stays causal, so decoding is unchanged.
    prefix_lm: bool = False
    # Aligned positions: the input (speech frames for ASR, text for TTS) gets RoPE positions
    # 1 + u * rate and the output 1 + j, with rate = output tokens per input item measured on the
    # training data, so output token j sits at the same position as the input it transcribes.
    # The roughly monotonic alignment becomes "attend near your own position", which RoPE makes
    # easy, instead of a content-only search that a small LM learns slowly.
    aligned_positions: bool = True
    # Pooled evidence for the class tasks (LID, GID): the mean of the utterance's speech states is
    # added to the `<sep>` embedding, the position that predicts the class token. Without it the
    # only path from the speech to that one token of gradient per utterance is attention, and a
    # single-task LID model could sit at chance (loss ln 5 / 2) for hundreds of steps, or for the
    # whole run, depending on the CPU's rounding (README, "LM": classification that always learns).
    class_pooling: bool = False
    # Frame-level evidence for the class tasks: every speech state is also asked for the class
    # token (the tied output layer on the speech encoder's states, cross-entropy averaged over the
    # frames), weighted like ctc_weight. An utterance then gives T' tokens of gradient instead of one.
    class_frame_weight: float = 0.0
    gradient_checkpointing: bool = False


def llama_config(cfg: ModelConfig, vocab_size: int, n_layers: int) -> LlamaConfig:
    """The decoder's (and the speech encoder's) Llama hyper-parameters."""
    from transformers import LlamaConfig

    llama = LlamaConfig(
        vocab_size=vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.d_ff,
        num_hidden_layers=n_layers, num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads,
        max_position_embeddings=cfg.max_positions, rope_theta=cfg.rope_theta, attention_dropout=cfg.dropout,
        tie_word_embeddings=cfg.tie_embeddings, pad_token_id=0, bos_token_id=None, eos_token_id=1,
    )
    llama._attn_implementation = "sdpa"
    return llama


def length_mask(lens: torch.Tensor, n: int) -> torch.Tensor:
    """(B, n) long mask, 1 where the position is < that row's length."""
    return (torch.arange(n, device=lens.device)[None, :] < lens[:, None]).long()


def full_attention_mask(mask: torch.Tensor) -> torch.Tensor:
    """(B, L) padding mask -> (B, 1, L, L) boolean bidirectional mask (True = attend)."""
    full = mask[:, None, :].bool().expand(-1, mask.shape[1], -1).clone()
    full |= torch.eye(mask.shape[1], dtype=torch.bool, device=mask.device)[None]  # padded rows: no all-masked row (NaN)
    return full[:, None]


class SpeechAdapter(nn.Module):
    """Continuous frames (B, T, D) -> (B, T', d_model) with T' ~ T // stack, then (with
    `encoder_layers`) a bidirectional Transformer encoder over the T' positions."""

    def __init__(self, feat_dim: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.kind, self.stack = cfg.adapter, cfg.stack
        if cfg.adapter == "stack":
            self.proj = nn.Sequential(nn.Linear(feat_dim * cfg.stack, cfg.d_model), nn.GELU(), nn.Linear(cfg.d_model, cfg.d_model))
        elif cfg.adapter == "conv2d":
            # ESPnet's Conv2dSubsampling (4x; Conv2dSubsampling8 for 8x): 3x3 stride-2 convolutions
            # over (time, frequency), one per halving of the frame rate.
            if cfg.stack not in (2, 4, 8):
                raise ValueError(f"conv2d adapter: stack must be 2, 4 or 8 (got {cfg.stack})")
            c, layers, f = cfg.d_model // 4, [], feat_dim
            for i in range(cfg.stack.bit_length() - 1):
                layers += [nn.Conv2d(1 if i == 0 else c, c, 3, 2), nn.GELU()]
                f = (f - 1) // 2
            self.conv = nn.Sequential(*layers)
            self.proj = nn.Linear(c * f, cfg.d_model)
        else:
            raise ValueError(f"unknown adapter {cfg.adapter!r} (stack or conv2d)")
        from transformers import LlamaModel

        self.encoder = LlamaModel(llama_config(cfg, 1, cfg.encoder_layers)) if cfg.encoder_layers > 0 else None

    def out_len(self, n: int) -> int:
        if self.kind == "stack":
            return n // self.stack
        for _ in range(self.stack.bit_length() - 1):  # each 3x3 stride-2 conv without padding
            n = (n - 1) // 2
        return n

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """`lens`: (B,) valid positions of each row after subsampling (the encoder's padding mask)."""
        if self.kind == "stack":
            b, t, d = x.shape
            t = t // self.stack * self.stack
            y = self.proj(x[:, :t].reshape(b, t // self.stack, d * self.stack))
        else:
            y = self.conv(x.unsqueeze(1))  # (B, C, T', F')
            y = self.proj(y.transpose(1, 2).flatten(2))
        if self.encoder is None:
            return y
        pos = torch.arange(y.shape[1], device=y.device)[None].expand(y.shape[0], -1)
        mask = full_attention_mask(length_mask(lens, y.shape[1]))
        return self.encoder(inputs_embeds=y, attention_mask=mask, position_ids=pos).last_hidden_state


class PolySpeechLM(nn.Module):
    """Decoder-only multitask LM. `n_text` (text units) sizes the CTC head (blank = class 0)."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, feat_dim: int, n_text: int, text_offset: int) -> None:
        super().__init__()
        from transformers import LlamaForCausalLM

        self.cfg, self.text_offset = cfg, text_offset
        self.llm = LlamaForCausalLM(llama_config(cfg, vocab_size, cfg.n_layers))
        if cfg.gradient_checkpointing:
            self.llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.adapter = SpeechAdapter(feat_dim, cfg) if feat_dim > 0 else None
        self.ctc_head = nn.Linear(cfg.d_model, n_text + 1) if cfg.ctc_weight > 0 and n_text > 0 else None
        # Output tokens per input item, per task (set from the training data; saved with the model).
        self.register_buffer("rates", torch.ones(len(TASKS)))
        # Mean and std of the input features for global CMVN (set from the training data; saved with the model).
        self.register_buffer("feat_stats", torch.stack([torch.zeros(max(feat_dim, 1)), torch.ones(max(feat_dim, 1))]))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ---- sequence assembly -------------------------------------------------------------------
    def speech_states(self, batch: dict) -> tuple[torch.Tensor, list[int]] | None:
        """The adapter's (and speech encoder's) (B, T', D) states and each row's length T'_i."""
        if batch.get("feats") is None:
            return None
        t = self.adapter.out_len(batch["feats"].shape[1])
        lens = [min(self.adapter.out_len(int(n)), t) for n in batch["feat_lens"]]
        return self.adapter(batch["feats"], torch.tensor(lens, device=batch["feats"].device)), lens

    def embed(self, batch: dict, speech: tuple[torch.Tensor, list[int]] | None = None,
              ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]], torch.Tensor]:
        """(B, L, D) input embeddings, the (B, L) padding mask, each row's input span, (B, L) positions.

        `batch["prefix"]`, `batch["suffix"]`: lists of 1-D token tensors placed before and after
        the (optional) continuous speech; `batch["feats"]` (B, T, F) with `batch["feat_lens"]`.
        `speech`: `speech_states(batch)` when the caller already has it.
        """
        emb = self.llm.get_input_embeddings()
        rows, spans, positions = [], [], []
        aligned = self.cfg.aligned_positions and batch["task"] in ALIGNED_TASKS
        pooled = self.cfg.class_pooling and batch["task"] in CLASS_TASKS
        rate = float(self.rates[TASKS.index(batch["task"])]) if aligned else 1.0
        if speech is None:
            speech = self.speech_states(batch)
        for i, (pre, suf) in enumerate(zip(batch["prefix"], batch["suffix"])):
            parts = [emb(pre)]
            start = pre.numel()
            tail = emb(suf)
            if speech is not None:
                n = speech[1][i]
                parts.append(speech[0][i, :n])
                spans.append((start, start + n))
                if pooled:  # suf[0] is <sep>, the position that predicts the class token
                    tail = torch.cat([tail[:1] + speech[0][i, :n].mean(0, keepdim=True), tail[1:]])
            else:
                spans.append((start, start))
            parts.append(tail)
            rows.append(torch.cat(parts))
            n_in = spans[-1][1] - 1  # input items after the task token
            if aligned:
                pos = torch.cat([torch.zeros(1), 1 + torch.arange(n_in) * rate, 1 + torch.arange(suf.numel(), dtype=torch.float)])
            else:
                pos = torch.arange(rows[-1].shape[0], dtype=torch.float)
            positions.append(pos)
        lens = [r.shape[0] for r in rows]
        x = nn.utils.rnn.pad_sequence(rows, batch_first=True)
        mask = length_mask(torch.tensor(lens, device=x.device), x.shape[1])
        return x, mask, spans, nn.utils.rnn.pad_sequence(positions, batch_first=True).to(x.device)

    def attention_mask(self, mask: torch.Tensor, spans: list[tuple[int, int]]) -> torch.Tensor:
        """The (B, L) padding mask, or with `prefix_lm` a (B, 1, L, L) boolean mask (True = attend)."""
        if not self.cfg.prefix_lm:
            return mask
        n = mask.shape[1]
        i = torch.arange(n, device=mask.device)
        causal = i[None, :] <= i[:, None]
        ends = torch.tensor([e for _, e in spans], device=mask.device)[:, None, None]  # input = [0, end)
        prefix = (i[None, :, None] < ends) & (i[None, None, :] < ends)
        return full_attention_mask(mask) & (causal[None] | prefix)[:, None]  # the diagonal survives: causal holds it

    def hidden(self, batch: dict, speech: tuple[torch.Tensor, list[int]] | None = None,
               ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        """Last hidden states (B, L, D), the padding mask and the speech/input spans."""
        x, mask, spans, pos = self.embed(batch, speech)
        h = self.llm.model(inputs_embeds=x, attention_mask=self.attention_mask(mask, spans), position_ids=pos).last_hidden_state
        return h, mask, spans

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """Loss of one batch: CE on the output tokens (+ ctc_weight * CTC for ASR)."""
        speech = self.speech_states(batch)
        h, mask, spans = self.hidden(batch, speech)
        # Targets: the suffix is `<sep> output <eos>`; position p predicts token p+1, so the
        # positions from <sep> to the last output token carry the loss.
        targets = torch.full(mask.shape, -100, dtype=torch.long, device=h.device)
        for i, (suf, (_, end)) in enumerate(zip(batch["suffix"], spans)):
            targets[i, end : end + suf.numel() - 1] = suf[1:]
        sel = targets != -100
        logits = self.llm.lm_head(h[sel])
        ce = F.cross_entropy(logits.float(), targets[sel])
        out = {"ce": ce, "loss": ce, "n_tokens": sel.sum()}
        # Label smoothing (training batches carry it, see lm/data.py augment_batch; only in train
        # mode): it changes the loss only, `ce` stays the plain cross-entropy (logs, dev loss).
        smoothing = float(batch.get("label_smoothing", 0.0)) if self.training else 0.0
        if smoothing > 0:
            out["loss"] = F.cross_entropy(logits.float(), targets[sel], label_smoothing=smoothing)
        if self.cfg.class_frame_weight > 0 and batch["task"] in CLASS_TASKS and speech is not None:
            w = self.cfg.class_frame_weight
            out["frame"] = self.class_frame_loss(speech, torch.stack([suf[1] for suf in batch["suffix"]]))
            out["loss"] = (1 - w) * out["loss"] + w * out["frame"]
        if self.ctc_head is not None and batch.get("ctc_targets") is not None:
            ctc = self.ctc_loss(*self.ctc_states(h, spans, speech), batch["ctc_targets"])
            out["ctc"] = ctc
            out["loss"] = (1 - self.cfg.ctc_weight) * out["loss"] + self.cfg.ctc_weight * ctc
        return out

    def class_frame_loss(self, speech: tuple[torch.Tensor, list[int]], classes: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the class token (B,) predicted from every valid speech state."""
        states, lens = speech
        valid = length_mask(torch.tensor(lens, device=states.device), states.shape[1]).bool()
        logits = self.llm.lm_head(states[valid])
        return F.cross_entropy(logits.float(), classes[:, None].expand(-1, states.shape[1])[valid])

    def ctc_states(self, h: torch.Tensor, spans: list[tuple[int, int]], speech: tuple[torch.Tensor, list[int]] | None,
                   ) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """What the CTC head reads: the speech encoder's states when there is one, else the decoder's."""
        if self.adapter is not None and self.adapter.encoder is not None and speech is not None:
            return speech[0], [(0, n) for n in speech[1]]
        return h, spans

    def batch_ctc_logprobs(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """CTC log-probs (B, T, n_text + 1) and lengths of a batch (decoding: one pass, no output tokens)."""
        speech = self.speech_states(batch)
        if self.adapter.encoder is not None:
            return self.ctc_logprobs(*self.ctc_states(None, [], speech))
        h, _, spans = self.hidden(batch, speech)
        return self.ctc_logprobs(h, spans)

    def ctc_logprobs(self, h: torch.Tensor, spans: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        t = max(e - s for s, e in spans)
        frames = torch.stack([F.pad(h[i, s:e], (0, 0, 0, t - (e - s))) for i, (s, e) in enumerate(spans)])
        lens = torch.tensor([e - s for s, e in spans], device=h.device)
        return self.ctc_head(frames).float().log_softmax(-1), lens

    def ctc_loss(self, h: torch.Tensor, spans: list[tuple[int, int]], targets: list[torch.Tensor]) -> torch.Tensor:
        logp, lens = self.ctc_logprobs(h, spans)
        local = [t - self.text_offset + 1 for t in targets]  # text id -> CTC class (0 = blank)
        tgt_lens = torch.tensor([t.numel() for t in local], device=h.device)
        return F.ctc_loss(logp.transpose(0, 1), torch.cat(local), lens, tgt_lens, zero_infinity=True)
