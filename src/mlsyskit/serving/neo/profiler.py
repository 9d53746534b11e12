"""Measure NEO's per-layer cost tables on the real executor (``TablePerfPredictor``'s job).

Runs artificial batches through the decoder layers of the executor's model and times each
building block (median of ``repeats``): the linear layers over ``S`` tokens, prefill attention
of one prompt, device decode attention over ``N`` context tokens, host decode attention of ``n``
requests over ``N`` tokens (in a separate host pool), the hand-off to the host thread in a
pipelined stage (``lnch``), the step's own work outside the layers and a block copy between
the pools.

Each block is timed over *every* layer in turn and divided by the layer count, as a forward
pass meets them: timing layer 0 alone keeps its weights hot in the CPU caches and
under-predicted a real decode step by about a third (see :mod:`~mlsyskit.serving.neo.costcheck`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import torch

from mlsyskit.serving.executor.torch_executor import TorchExecutor
from mlsyskit.serving.model import PagedKVCache, SequenceBatch
from mlsyskit.serving.model.layers import DecoderLayer
from mlsyskit.serving.neo.cost import CostTables


def _median_s(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _decode_batch(contexts: Sequence[int], block_size: int) -> SequenceBatch:
    tables, nxt = [], 0
    for ctx in contexts:
        n = -(-ctx // block_size)
        tables.append(list(range(nxt, nxt + n)))
        nxt += n
    return SequenceBatch(
        token_ids=torch.zeros(len(contexts), dtype=torch.long),
        positions=torch.tensor([c - 1 for c in contexts], dtype=torch.long),
        query_lens=[1] * len(contexts),
        context_lens=list(contexts),
        block_tables=tables,
    )


def _step_extras(model: torch.nn.Module, layers: CostTables, cache: PagedKVCache,
                 block_size: int, num_blocks: int, repeats: int) -> tuple[float, float]:
    """Per-step time outside the per-layer blocks: (fixed, per sequence).

    A whole decode forward (embedding, RoPE, every layer, the LM head) of 1 and of ``n``
    requests, minus what the layer tables account for; the rest is the step's own overhead.
    """
    ctx = 2 * block_size
    n = max(2, min(16, num_blocks // 2))

    def residual(num_seqs: int) -> float:
        batch = _decode_batch([ctx] * num_seqs, block_size)
        whole = _median_s(lambda: model(batch, cache), repeats)
        parts = layers.num_layers * (layers.linr(num_seqs) + layers.gdec(num_seqs * ctx))
        return whole - parts

    return extras_from_residuals(residual(1), residual(n), n)


def extras_from_residuals(one: float, many: float, n: int) -> tuple[float, float]:
    """(fixed, per sequence) of a line ``fixed + per_seq * k`` through (1, one), (n, many).

    Neither may be negative: a falling line (noise) has no per-sequence cost, and then
    ``fixed`` is the one-sequence residual; a negative ``one`` is clamped only at the end, so
    it does not inflate the slope.
    """
    per_seq = max(0.0, (many - one) / (n - 1))
    return max(0.0, one - per_seq), per_seq


def profile_tables(
    executor: TorchExecutor,
    *,
    linr_x: Sequence[int] = (1, 16, 64, 256),
    pref_x: Sequence[int] = (16, 64, 256),
    ctx_x: Sequence[int] = (0, 256, 1024, 4096),
    cdec_n: Sequence[int] = (1, 4, 16),
    repeats: int = 3,
) -> CostTables:
    """Per-layer tables measured on ``executor``'s model (mean over its layers)."""
    model = executor.model
    cfg = model.config
    layers = [layer for layer in model.layers if isinstance(layer, DecoderLayer)]
    if len(layers) != cfg.num_layers:
        raise TypeError(f"{cfg.name}: expected {cfg.num_layers} DecoderLayers")
    per_layer = 1.0 / len(layers)
    bs = executor.block_size
    blocks = -(-max(max(ctx_x), max(pref_x)) // bs) + max(cdec_n) + 8
    dev_cache = PagedKVCache(cfg, blocks, bs, device=executor.device)
    host_cache = PagedKVCache(cfg, blocks, bs, device="cpu")
    gen = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(executor.device)

    hd, nh, nkv = cfg.head_dim, cfg.num_heads, cfg.num_kv_heads
    with torch.no_grad():
        def linr(s: int) -> float:
            # RoPE comes once per step (model.rope), as both executors compute it
            h, pos = rand(s, cfg.hidden_size), torch.arange(s)
            attn, rope = rand(s, nh, hd), model.rope(pos)
            return per_layer * _median_s(
                lambda: [(lay.qkv(h, pos, rope), lay.finish(h, attn)) for lay in layers],
                repeats)

        def attend(contexts: Sequence[int], cache: PagedKVCache, prompt: int = 0) -> float:
            if prompt:
                batch = SequenceBatch(torch.zeros(prompt, dtype=torch.long),
                                      torch.arange(prompt), [prompt], [prompt],
                                      [list(range(-(-prompt // bs)))])
            else:
                batch = _decode_batch(contexts, bs)
            t = batch.num_tokens
            q, k, v = rand(t, nh, hd), rand(t, nkv, hd), rand(t, nkv, hd)
            return per_layer * _median_s(
                lambda: [lay.attend(q, k, v, batch, cache) for lay in layers], repeats)

        def spread(total: int, n: int) -> list[int]:
            return [max(2, total // n)] * n

        linr_s = [linr(s) for s in linr_x]
        pref_s = [attend((), dev_cache, p) for p in pref_x]
        gdec_s = [0.0 if n == 0 else attend(spread(n, 8), dev_cache) for n in ctx_x]
        cdec_s = [[attend(spread(max(c, 2 * n), n), host_cache) for c in ctx_x]
                  for n in cdec_n]
        with ThreadPoolExecutor(1) as pool:
            # the hand-off as a pipelined stage meets it: one host decode on the host thread
            # while this thread runs one token's linear layers, every layer. The stage should
            # take max(device part, host part); what it takes beyond that is the hand-off
            # (thread round trip, and Python work the two threads cannot overlap)
            ctx1 = 2 * bs
            b1 = _decode_batch([ctx1], bs)
            q1, k1, v1 = rand(1, nh, hd), rand(1, nkv, hd), rand(1, nkv, hd)
            h1, pos1, a1 = rand(1, cfg.hidden_size), torch.arange(1), rand(1, nh, hd)
            rope1 = model.rope(pos1)

            def device_part() -> None:
                for lay in layers:
                    lay.qkv(h1, pos1, rope1)
                    lay.finish(h1, a1)

            def stage() -> None:
                for lay in layers:
                    fut = pool.submit(lay.attend, q1, k1, v1, b1, host_cache)
                    lay.qkv(h1, pos1, rope1)
                    lay.finish(h1, a1)
                    fut.result()

            reps = max(repeats, 5)
            host_alone = per_layer * _median_s(
                lambda: [lay.attend(q1, k1, v1, b1, host_cache) for lay in layers], reps)
            device_alone = per_layer * _median_s(device_part, reps)
            together = per_layer * _median_s(stage, reps)
            lnch = max(0.0, together - max(device_alone, host_alone))
        copy = _median_s(lambda: dev_cache.copy_blocks_to(host_cache, [(0, 1)]), repeats)
        layer_tables = CostTables(
            num_layers=cfg.num_layers,
            linr_x=tuple(linr_x), linr_s=tuple(linr_s),
            pref_x=tuple(pref_x), pref_s=tuple(pref_s),
            gdec_x=tuple(ctx_x), gdec_s=tuple(gdec_s),
            cdec_n=tuple(cdec_n), cdec_x=tuple(ctx_x),
            cdec_s=tuple(tuple(row) for row in cdec_s),
            lnch_s=lnch, extra_fixed_s=0.0, extra_per_seq_s=0.0,
            link_per_token_s=copy / bs, source="",
        )
        extra_fixed, extra_per_seq = _step_extras(model, layer_tables, dev_cache, bs, blocks,
                                                  max(repeats, 5))
    return replace(layer_tables, extra_fixed_s=extra_fixed, extra_per_seq_s=extra_per_seq,
                   source=f"measured on this CPU, model {cfg.name}")
