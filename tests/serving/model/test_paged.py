from __future__ import annotations

import dataclasses

import pytest
import torch

from mlsyskit.serving.model import (
    ModelError,
    PagedKVCache,
    PagedLlama,
    SequenceBatch,
    get_model_config,
    max_logit_diff_vs_hf,
    paged_full_logits,
    to_hf_llama,
)
from tests.serving.model.factories import make_batch, random_tokens

TINY = get_model_config("tiny")


@pytest.fixture(scope="module")
def model() -> PagedLlama:
    return PagedLlama(TINY, seed=3)


def test_parity_with_transformers() -> None:
    assert max_logit_diff_vs_hf("tiny", seed=0) <= 1e-4


def test_parity_with_llama3_rope_base_and_gqa() -> None:
    cfg = dataclasses.replace(TINY, rope_theta=500000.0, num_heads=8, num_kv_heads=2,
                              head_dim=8)
    assert max_logit_diff_vs_hf(cfg, seed=1, lengths=(6, 19), prompt_lens=(6, 4),
                                block_size=4) <= 1e-4


def test_block_size_and_table_permutation_do_not_matter(model: PagedLlama) -> None:
    seqs = [random_tokens(n, seed=n) for n in (11, 4, 17)]
    reference = paged_full_logits(model, seqs, [5, 4, 9], block_size=1, seed=0)
    for block_size, seed in ((3, 1), (4, 2), (16, 3), (7, 4)):
        got = paged_full_logits(model, seqs, [5, 4, 9], block_size=block_size, seed=seed)
        for a, b in zip(reference, got, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_batched_together_equals_alone(model: PagedLlama) -> None:
    seqs = [random_tokens(n, seed=10 + n) for n in (9, 1, 14)]
    together = paged_full_logits(model, seqs, [9, 1, 6], block_size=4)
    for i, seq in enumerate(seqs):
        alone = paged_full_logits(model, [seq], [[9, 1, 6][i]], block_size=4)[0]
        torch.testing.assert_close(together[i], alone, atol=1e-5, rtol=0)


def test_chunked_prefill_and_hidden_states_match_hf(model: PagedLlama) -> None:
    tokens = random_tokens(12, seed=7)
    cache = PagedKVCache(TINY, num_blocks=4, block_size=5)
    table = [2, 0, 3]
    # prefill in two chunks (7 then 5 tokens) in two steps
    model(make_batch([tokens[:7]], [0], [table]), cache)
    out = model(make_batch([tokens[7:]], [7], [table]), cache, hidden_layers=[0, 1])
    hf = to_hf_llama(model)
    with torch.no_grad():
        ref = hf(torch.tensor([tokens]), output_hidden_states=True)
    torch.testing.assert_close(out.logits[0], ref.logits[0, -1], atol=1e-5, rtol=0)
    # HF's hidden_states[i + 1] is layer i's output; the last one is after the final norm
    torch.testing.assert_close(out.hidden[0][0], ref.hidden_states[1][0, -1], atol=1e-5, rtol=0)
    assert set(out.hidden) == {0, 1} and out.hidden[1].shape == (1, TINY.hidden_size)


def test_split_attention_across_two_pools_equals_one(model: PagedLlama) -> None:
    """The NEO seam: attend a sub-batch against another cache and scatter back."""
    a, b = random_tokens(6, seed=1), random_tokens(9, seed=2)
    one = PagedKVCache(TINY, num_blocks=8, block_size=4)
    dev, host = PagedKVCache(TINY, 8, 4), PagedKVCache(TINY, 8, 4)
    tables = [[0, 1], [2, 3, 4]]
    for cache in (one, dev, host):
        model(make_batch([a, b], [0, 0], tables), cache)
    step = make_batch([[5], [7]], [6, 9], tables)
    expected = model(step, one).logits
    hidden = model.embed(step.token_ids)
    dev_part, dev_idx = step.select([0])
    host_part, host_idx = step.select([1])
    for layer in model.layers:
        q, k, v = layer.qkv(hidden, step.positions)
        attn = torch.empty_like(q)
        attn[dev_idx] = layer.attend(q[dev_idx], k[dev_idx], v[dev_idx], dev_part, dev)
        attn[host_idx] = layer.attend(q[host_idx], k[host_idx], v[host_idx], host_part, host)
        hidden = layer.finish(hidden, attn)
    got = model.final_logits(hidden[step.last_token_indices()])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_swap_out_and_in_keeps_logits(model: PagedLlama) -> None:
    tokens = random_tokens(10, seed=5)
    device = PagedKVCache(TINY, num_blocks=6, block_size=4)
    host = PagedKVCache(TINY, num_blocks=3, block_size=4)
    model(make_batch([tokens], [0], [[5, 1, 3]]), device)
    device.copy_blocks_to(host, [(5, 0), (1, 2), (3, 1)])
    from_host = model(make_batch([[42]], [10], [[0, 2, 1]]), host).logits
    fresh = PagedKVCache(TINY, num_blocks=6, block_size=4)
    host.copy_blocks_to(fresh, [(0, 4), (2, 0), (1, 2)])
    from_fresh = model(make_batch([[42]], [10], [[4, 0, 2]]), fresh).logits
    reference = model(make_batch([[42]], [10], [[5, 1, 3]]), device).logits
    torch.testing.assert_close(from_host, reference, atol=1e-6, rtol=0)
    torch.testing.assert_close(from_fresh, reference, atol=1e-6, rtol=0)


def test_clear_errors(model: PagedLlama) -> None:
    cache = PagedKVCache(TINY, num_blocks=2, block_size=4)
    with pytest.raises(ModelError, match=r"needing 2 blocks of 4.*has 1"):
        model(make_batch([random_tokens(6, 0)], [0], [[0]]), cache)
    with pytest.raises(ModelError, match=r"hidden_layers \[2\]"):
        model(make_batch([[1]], [0], [[0]]), cache, hidden_layers=[2])
    with pytest.raises(ModelError, match="query_len 2 and context_len 1"):
        SequenceBatch(torch.tensor([1, 2]), torch.tensor([0, 1]), [2], [1], [[0]])
    with pytest.raises(ModelError, match=r"destination block ids \[9\]"):
        cache.copy_blocks_to(PagedKVCache(TINY, 2, 4), [(0, 9)])
    with pytest.raises(ModelError, match="non-gated MLP"):
        PagedLlama(get_model_config("gpt-j-6b"))


def test_seeded_init_is_deterministic() -> None:
    a, b, c = PagedLlama(TINY, seed=1), PagedLlama(TINY, seed=1), PagedLlama(TINY, seed=2)
    assert torch.equal(a.lm_head.weight, b.lm_head.weight)
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)
