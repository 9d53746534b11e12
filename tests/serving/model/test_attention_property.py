"""Paged attention equals plain dense causal attention, for any lengths and block layout."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsyskit.serving.model import PagedKVCache, get_model_config, paged_attention
from tests.serving.model.factories import make_batch

CFG = get_model_config("tiny")  # 4 query heads, 2 KV heads, head_dim 16


def dense_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: int) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v over all keys up to each query's position, by hand."""
    group = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(group, dim=1)
    v = v.repeat_interleave(group, dim=1)
    scores = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(q.shape[-1])
    q_pos = torch.arange(start, start + q.shape[0])[:, None]
    scores = scores.masked_fill(torch.arange(k.shape[0])[None, :] > q_pos, float("-inf"))
    return torch.einsum("hqk,khd->qhd", scores.softmax(-1), v)


@settings(max_examples=25, deadline=None)
@given(
    seqs=st.lists(st.tuples(st.integers(1, 12), st.integers(0, 12)), min_size=1, max_size=4),
    block_size=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_paged_equals_dense(seqs: list[tuple[int, int]], block_size: int, seed: int) -> None:
    """Each sequence has ``cached`` tokens already in the cache and ``q_len`` new ones."""
    gen = torch.Generator().manual_seed(seed)
    h, hkv, d = CFG.num_heads, CFG.num_kv_heads, CFG.head_dim
    needs = [-(-(q + c) // block_size) for q, c in seqs]
    cache = PagedKVCache(CFG, num_blocks=sum(needs), block_size=block_size)
    perm = torch.randperm(sum(needs), generator=gen).tolist()
    tables, full_k, full_v = [], [], []
    for (q_len, cached), need in zip(seqs, needs, strict=True):
        tables.append(perm[:need])
        perm = perm[need:]
        full_k.append(torch.randn(q_len + cached, hkv, d, generator=gen))
        full_v.append(torch.randn(q_len + cached, hkv, d, generator=gen))
        if cached:  # put the history in the cache as an earlier step would have
            past = make_batch([[0] * cached], [0], [tables[-1]])
            cache.write(0, _slots(past, block_size), full_k[-1][:cached], full_v[-1][:cached])
    batch = make_batch([[0] * q for q, _ in seqs], [c for _, c in seqs], tables)
    q = torch.randn(batch.num_tokens, h, d, generator=gen)
    k = torch.cat([fk[c:] for fk, (_, c) in zip(full_k, seqs, strict=True)])
    v = torch.cat([fv[c:] for fv, (_, c) in zip(full_v, seqs, strict=True)])
    out = paged_attention(q, k, v, batch, cache, layer=0)
    offsets = batch.token_offsets()
    for i, (_, cached) in enumerate(seqs):
        part = slice(offsets[i], offsets[i + 1])
        ref = dense_reference(q[part], full_k[i], full_v[i], cached)
        torch.testing.assert_close(out[part], ref, atol=1e-5, rtol=1e-5)


def _slots(batch: object, block_size: int) -> torch.Tensor:
    from mlsyskit.serving.model.batch import paged_layout

    return paged_layout(batch, block_size, torch.device("cpu")).slots  # type: ignore[arg-type]
