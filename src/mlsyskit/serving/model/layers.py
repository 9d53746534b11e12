"""Llama building blocks: RMSNorm, rotary embeddings (Hugging Face convention), paged attention
and the decoder layer split into ``qkv`` / ``attend`` / ``finish``.

The split exists so that an executor can run one layer in steps and send the attention of some
sequences elsewhere (NEO runs decode attention of host-resident sequences on the CPU while the
device does the linear work of another sub-batch). ``qkv`` and ``finish`` are per-token and
know nothing about the cache; ``attend`` is the only step that touches a ``PagedKVCache``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlsyskit.serving.model.batch import SequenceBatch, paged_layout
from mlsyskit.serving.model.cache import PagedKVCache
from mlsyskit.serving.model.config import ModelConfig


class RMSNorm(nn.Module):
    """Root-mean-square norm computed in float32, as Llama does."""

    def __init__(self, hidden_size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(dtype)


def rope_cos_sin(positions: Tensor, head_dim: int, theta: float) -> tuple[Tensor, Tensor]:
    """``cos``/``sin`` ``[T, head_dim]`` for absolute ``positions`` (halves concatenated)."""
    inv_freq = 1.0 / theta ** (
        torch.arange(0, head_dim, 2, dtype=torch.int64, device=positions.device).float()
        / head_dim
    )
    freqs = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x`` ``[T, heads, head_dim]`` by the "rotate half" convention of HF Llama."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return (x * cos[:, None, :] + rotated * sin[:, None, :]).to(x.dtype)


def paged_attention(
    q: Tensor, k: Tensor, v: Tensor, batch: SequenceBatch, cache: PagedKVCache, layer: int
) -> Tensor:
    """Write the new ``k``/``v`` into ``cache`` and attend each new token over its context.

    Parameters
    ----------
    q : Tensor
        ``[T, num_heads, head_dim]`` queries of ``batch``'s new tokens (RoPE applied).
    k, v : Tensor
        ``[T, num_kv_heads, head_dim]`` keys (RoPE applied) and values of the new tokens.
    batch : SequenceBatch
        The sequences these tokens belong to, with block tables into ``cache``.
    cache : PagedKVCache
        The pool holding these sequences' K/V; computation happens on its device.
    layer : int
        Decoder layer index.

    Returns
    -------
    Tensor
        ``[T, num_heads, head_dim]`` attention output on ``q``'s device and dtype.
    """
    device = cache.device
    layout = paged_layout(batch, cache.block_size, device)
    cache.write(layer, layout.slots, k.to(device), v.to(device))
    k_slots, v_slots = cache.layer_slots(layer)
    q_dev = q.to(device)
    out = torch.empty_like(q_dev)
    num_heads, head_dim = q.shape[1], q.shape[2]
    # index_select / index_copy_ on flat rows: much faster on CPU than advanced indexing
    for group in layout.groups:
        num_seqs, max_q, max_ctx = group.mask.shape[0], group.mask.shape[2], group.mask.shape[3]
        padded = q_dev.new_zeros(num_seqs * max_q, num_heads, head_dim)
        padded.index_copy_(0, group.query_index, q_dev.index_select(0, group.token_index))
        queries = padded.view(num_seqs, max_q, num_heads, head_dim).transpose(1, 2)
        flat_gather = group.gather.flatten()
        kv_shape = (num_seqs, max_ctx, *k_slots.shape[1:])
        keys = k_slots.index_select(0, flat_gather).view(kv_shape).to(q_dev.dtype)
        values = v_slots.index_select(0, flat_gather).view(kv_shape).to(q_dev.dtype)
        attn = F.scaled_dot_product_attention(
            queries, keys.transpose(1, 2), values.transpose(1, 2), attn_mask=group.mask,
            enable_gqa=True,
        )
        flat = attn.transpose(1, 2).reshape(num_seqs * max_q, num_heads, head_dim)
        out.index_copy_(0, group.token_index, flat.index_select(0, group.query_index))
    return out.to(q.device)


class Attention(nn.Module):
    """The four attention projections (names follow Hugging Face Llama)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        hidden, head_dim = config.hidden_size, config.head_dim
        self.q_proj = nn.Linear(hidden, config.num_heads * head_dim, bias=False)
        self.k_proj = nn.Linear(hidden, config.num_kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(hidden, config.num_kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(config.num_heads * head_dim, hidden, bias=False)


class MLP(nn.Module):
    """SwiGLU: ``down(silu(gate(x)) * up(x))``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    """One Llama decoder layer, callable in three steps.

    ``finish(h, attend(*qkv(h, positions), batch, cache))`` equals the usual
    pre-norm layer ``h + attn(norm(h)); h + mlp(norm(h))``.
    """

    def __init__(self, config: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def qkv(
        self, hidden: Tensor, positions: Tensor, rope: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Norm, projections and RoPE: ``q [T, H, D]``, ``k, v [T, H_kv, D]``.

        ``rope`` is ``rope_cos_sin(positions, ...)`` when the caller computed it once for all
        layers; otherwise it is computed here.
        """
        cfg = self.config
        x = self.input_layernorm(hidden)
        num_tokens = x.shape[0]
        q = self.self_attn.q_proj(x).view(num_tokens, cfg.num_heads, cfg.head_dim)
        k = self.self_attn.k_proj(x).view(num_tokens, cfg.num_kv_heads, cfg.head_dim)
        v = self.self_attn.v_proj(x).view(num_tokens, cfg.num_kv_heads, cfg.head_dim)
        cos, sin = rope if rope is not None else rope_cos_sin(
            positions, cfg.head_dim, cfg.rope_theta
        )
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def attend(
        self, q: Tensor, k: Tensor, v: Tensor, batch: SequenceBatch, cache: PagedKVCache
    ) -> Tensor:
        """Store ``k``/``v`` in ``cache`` and attend; ``batch`` may be a ``select``-ed part."""
        return paged_attention(q, k, v, batch, cache, self.layer_idx)

    def finish(self, hidden: Tensor, attn_out: Tensor) -> Tensor:
        """Output projection + residual, then the MLP + residual: the layer's output."""
        hidden = hidden + self.self_attn.o_proj(attn_out.flatten(1))
        return hidden + self.mlp(self.post_attention_layernorm(hidden))
