"""Numerical parity of ``PagedLlama`` over a paged cache against ``transformers`` Llama."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mlsyskit.serving.model.batch import SequenceBatch
from mlsyskit.serving.model.cache import PagedKVCache
from mlsyskit.serving.model.checkpoint import to_hf_llama
from mlsyskit.serving.model.config import ModelConfig, get_model_config
from mlsyskit.serving.model.llama import PagedLlama


def paged_full_logits(
    model: PagedLlama,
    sequences: Sequence[Sequence[int]],
    prompt_lens: Sequence[int],
    block_size: int,
    *,
    seed: int = 0,
) -> list[torch.Tensor]:
    """Logits ``[len(seq), vocab]`` of every position, computed step by step over a paged cache.

    Step 0 prefills ``prompt_lens[i]`` tokens of every sequence in one batch; each later step
    decodes one more token of every sequence not yet complete (so sequences of different
    lengths share steps). Block ids are a seeded random permutation, so tables are scattered.
    """
    num_blocks = sum(-(-len(s) // block_size) for s in sequences)
    cache = PagedKVCache(model.config, num_blocks, block_size, device=model.device,
                         dtype=model.embed_tokens.weight.dtype)
    perm = torch.randperm(num_blocks, generator=torch.Generator().manual_seed(seed)).tolist()
    tables, start = [], 0
    for seq in sequences:
        need = -(-len(seq) // block_size)
        tables.append(perm[start:start + need])
        start += need
    done = [0] * len(sequences)
    out: list[list[torch.Tensor]] = [[] for _ in sequences]
    while any(d < len(s) for d, s in zip(done, sequences, strict=True)):
        active = [i for i, s in enumerate(sequences) if done[i] < len(s)]
        q_lens = [prompt_lens[i] if done[i] == 0 else 1 for i in active]
        ids = [t for i, q in zip(active, q_lens, strict=True) for t in sequences[i][done[i]:
                                                                                  done[i] + q]]
        pos = [p for i, q in zip(active, q_lens, strict=True) for p in range(done[i], done[i] + q)]
        batch = SequenceBatch(
            token_ids=torch.tensor(ids, dtype=torch.long),
            positions=torch.tensor(pos, dtype=torch.long),
            query_lens=q_lens,
            context_lens=[done[i] + q for i, q in zip(active, q_lens, strict=True)],
            block_tables=[tables[i] for i in active],
        )
        with torch.no_grad():
            hidden, _ = model.run_layers(batch, cache)
            logits = model.final_logits(hidden)
        offsets = batch.token_offsets()
        for j, i in enumerate(active):
            out[i].append(logits[offsets[j]:offsets[j + 1]])
            done[i] += q_lens[j]
    return [torch.cat(parts) for parts in out]


def max_logit_diff_vs_hf(
    config_name: str | ModelConfig = "tiny",
    seed: int = 0,
    *,
    lengths: Sequence[int] = (13, 7, 21),
    prompt_lens: Sequence[int] = (9, 3, 16),
    block_size: int = 5,
) -> float:
    """Largest absolute logit difference between ``PagedLlama`` (prefill + decode steps over a
    paged cache, several sequences per step) and ``transformers.LlamaForCausalLM`` (one full
    forward per sequence) on the same float32 weights. Block size 5 divides none of the lengths.

    ``config_name`` is a preset name or a ``ModelConfig``; ``lengths[i]`` is sequence ``i``'s
    total length, of which ``prompt_lens[i]`` are prefilled at once and the rest decoded.
    """
    torch.manual_seed(seed)
    config = get_model_config(config_name) if isinstance(config_name, str) else config_name
    model = PagedLlama(config, seed=seed)
    hf = to_hf_llama(model)
    generator = torch.Generator().manual_seed(seed + 1)
    sequences = [
        torch.randint(0, model.config.vocab_size, (n,), generator=generator).tolist()
        for n in lengths
    ]
    ours = paged_full_logits(model, sequences, prompt_lens, block_size, seed=seed)
    worst = 0.0
    with torch.no_grad():
        for seq, mine in zip(sequences, ours, strict=True):
            ref = hf(torch.tensor([seq])).logits[0]
            worst = max(worst, float((ref - mine).abs().max()))
    return worst
