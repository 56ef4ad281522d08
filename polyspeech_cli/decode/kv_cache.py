"""A lean KV-cached forward of the LM's Llama decoder, for decoding only.

Why not transformers' own cached forward: for our small decoders its per-call overhead dominates.
On one CPU thread a cached step of the 2-layer d=256 decoder cost 3.2 ms per token while its
matmuls take 0.33 ms: every call builds masks and cache objects and walks ~30 modules per layer.
Decoding calls it once per token. This runs the same weights (read from the module at every call,
so evaluation during training sees the current ones) with plain functional ops over a
preallocated cache. The prefill runs here too, so the cache layout is ours, not a transformers
version's. It supports exactly the Llama variant `lm/model.py:llama_config` builds (no biases,
SiLU MLP, default RoPE) and refuses others; tests/test_decode.py checks it against the
transformers forward without a cache.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class KVCache:
    """Keys and values of every layer, (N, kv_heads, capacity, head_dim), the first `length` filled,
    and which of those positions a row may attend to (`valid`, (N, capacity); False = padding)."""

    def __init__(self, n_layers: int, n: int, kv_heads: int, head_dim: int, capacity: int, like: torch.Tensor) -> None:
        shape = (n, kv_heads, capacity, head_dim)
        self.k = [like.new_zeros(shape) for _ in range(n_layers)]
        self.v = [like.new_zeros(shape) for _ in range(n_layers)]
        self.valid = torch.zeros(n, capacity, dtype=torch.bool, device=like.device)
        self.length = 0

    @property
    def capacity(self) -> int:
        return self.valid.shape[1]

    def reserve(self, extra: int) -> None:
        """Room for `extra` more positions (doubling, so appending one at a time stays amortised O(1))."""
        need = self.length + extra
        if need <= self.capacity:
            return
        new = max(need, 2 * self.capacity)
        pad = new - self.capacity
        self.k = [F.pad(k, (0, 0, 0, pad)) for k in self.k]
        self.v = [F.pad(v, (0, 0, 0, pad)) for v in self.v]
        self.valid = F.pad(self.valid, (0, pad))

    def select(self, idx: torch.Tensor) -> None:
        """Row i becomes old row idx[i] (beam search)."""
        self.k = [k.index_select(0, idx) for k in self.k]
        self.v = [v.index_select(0, idx) for v in self.v]
        self.valid = self.valid.index_select(0, idx)


class LeanDecoder:
    """Prefill and one-token steps of a `LlamaForCausalLM` over a `KVCache`."""

    def __init__(self, llm) -> None:
        c = llm.config
        unsupported = [name for name, bad in (
            ("hidden_act != silu", c.hidden_act != "silu"), ("attention_bias", getattr(c, "attention_bias", False)),
            ("mlp_bias", getattr(c, "mlp_bias", False)), ("rope_scaling", getattr(c, "rope_scaling", None) is not None),
        ) if bad]
        if unsupported:
            raise ValueError(f"the lean decoder supports the Llama variant lm/model.py builds, not one with {', '.join(unsupported)}")
        self.llm, self.eps = llm, c.rms_norm_eps
        self.heads, self.kv_heads = c.num_attention_heads, c.num_key_value_heads
        self.head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads

    def _norm(self, x: torch.Tensor, module) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), module.weight, self.eps)

    def _layers(self, x: torch.Tensor, positions: torch.Tensor, cache: KVCache, attend: torch.Tensor) -> torch.Tensor:
        """Run the decoder over `x` (N, T, D) at `positions` (N, T), writing keys/values at cache
        positions [length, length + T); `attend` (N, 1, T, length + T) bool. Last hidden states (N, T, D)."""
        n, t, _ = x.shape
        start, end = cache.length, cache.length + t
        cos, sin = self.llm.model.rotary_emb(x, positions)
        cos, sin = cos[:, None], sin[:, None]
        gqa = self.heads != self.kv_heads
        for i, layer in enumerate(self.llm.model.layers):
            a, mlp = layer.self_attn, layer.mlp
            y = self._norm(x, layer.input_layernorm)
            q = F.linear(y, a.q_proj.weight).view(n, t, self.heads, self.head_dim).transpose(1, 2)
            k = F.linear(y, a.k_proj.weight).view(n, t, self.kv_heads, self.head_dim).transpose(1, 2)
            v = F.linear(y, a.v_proj.weight).view(n, t, self.kv_heads, self.head_dim).transpose(1, 2)
            q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
            cache.k[i][:, :, start:end], cache.v[i][:, :, start:end] = k, v
            o = F.scaled_dot_product_attention(q, cache.k[i][:, :, :end], cache.v[i][:, :, :end], attn_mask=attend, enable_gqa=gqa)
            x = x + F.linear(o.transpose(1, 2).reshape(n, t, -1), a.o_proj.weight)
            y = self._norm(x, layer.post_attention_layernorm)
            x = x + F.linear(F.silu(F.linear(y, mlp.gate_proj.weight)) * F.linear(y, mlp.up_proj.weight), mlp.down_proj.weight)
        cache.length = end
        return self._norm(x, self.llm.model.norm)

    def prefill(self, x: torch.Tensor, mask: torch.Tensor, attention: torch.Tensor, positions: torch.Tensor,
                reserve: int = 256) -> tuple[torch.Tensor, KVCache]:
        """Logits (N, V) after each row's last valid position, and the cache of the whole prefix.

        `x` (N, L, D) input embeddings, `mask` (N, L) padding mask, `attention` what
        `PolySpeechLM.attention_mask` gives: the padding mask (causal attention) or a (N, 1, L, L)
        boolean mask (prefix LM)."""
        n, length, _ = x.shape
        cache = KVCache(len(self.llm.model.layers), n, self.kv_heads, self.head_dim, length + reserve, x)
        valid = mask.bool()
        if attention.dim() == 2:
            causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
            attend = causal[None, None] & valid[:, None, None, :]
        else:
            attend = attention.bool()
        h = self._layers(x, positions, cache, attend)
        cache.valid[:, :length] = valid
        last = mask.sum(1) - 1
        return F.linear(h[torch.arange(n, device=x.device), last], self.llm.lm_head.weight), cache

    def step(self, tokens: torch.Tensor, positions: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Feed one token per row (N,) at `positions` (N, 1); logits (N, V) for the next one."""
        cache.reserve(1)
        cache.valid[:, cache.length] = True
        x = F.embedding(tokens[:, None], self.llm.model.embed_tokens.weight)
        attend = cache.valid[:, None, None, : cache.length + 1]
        h = self._layers(x, positions, cache, attend)
        return F.linear(h[:, 0], self.llm.lm_head.weight)
