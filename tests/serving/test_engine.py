from __future__ import annotations

import pytest
import torch

from mlsyskit.serving.engine import Engine, RequestOutput, build_engine
from mlsyskit.serving.executor.torch_executor import TorchExecutor
from mlsyskit.serving.model import PagedKVCache, PagedLlama, SequenceBatch, get_model_config
from mlsyskit.serving.policy import FCFSPolicy, KVAction
from mlsyskit.serving.request import FinishReason, SamplingParams
from mlsyskit.serving.scheduler import SchedulerConfig

PROMPTS = [list(range(3, 3 + n)) for n in (5, 17, 9, 26, 12)]
MAX_TOKENS = [9, 6, 10, 7, 8]


@pytest.fixture(scope="module")
def model() -> PagedLlama:
    torch.set_num_threads(1)
    return PagedLlama(get_model_config("tiny"), seed=3)


@pytest.fixture(scope="module")
def reference(model: PagedLlama) -> list[list[int]]:
    """Greedy tokens one request at a time, re-running the whole sequence for every token
    (a fresh cache each time: no batching, no chunking, no preemption, no cache reuse)."""
    outs = []
    for prompt, n in zip(PROMPTS, MAX_TOKENS, strict=True):
        ids = list(prompt)
        for _ in range(n):
            cache = PagedKVCache(model.config, num_blocks=16, block_size=4)
            batch = SequenceBatch(
                token_ids=torch.tensor(ids), positions=torch.arange(len(ids)),
                query_lens=[len(ids)], context_lens=[len(ids)], block_tables=[list(range(16))],
            )
            ids.append(int(model(batch, cache).logits[0].argmax()))
        outs.append(ids[len(prompt):])
    return outs


def _run(engine: Engine, temperature: float = 0.0) -> dict[str, list[int]]:
    for i, (prompt, n) in enumerate(zip(PROMPTS, MAX_TOKENS, strict=True)):
        engine.add_request(
            prompt,
            SamplingParams(max_tokens=n, ignore_eos=True, temperature=temperature, seed=i),
            request_id=f"r{i}",
        )
    tokens: dict[str, list[int]] = {}
    finished: list[RequestOutput] = []
    while engine.has_unfinished():
        for out in engine.step():
            tokens.setdefault(out.request_id, []).extend(out.new_token_ids)
            if out.finished:
                finished.append(out)
    assert {o.request_id for o in finished} == set(tokens)
    assert all(o.finish_reason is FinishReason.LENGTH for o in finished)
    engine.block_manager.check_invariants()
    assert engine.block_manager.device.num_used == 0
    return tokens


def _engine(model: PagedLlama, preemption: KVAction, num_device_blocks: int) -> Engine:
    executor = TorchExecutor(model, num_device_blocks=num_device_blocks, num_host_blocks=16,
                             block_size=4)
    config = SchedulerConfig(max_num_seqs=4, max_num_batched_tokens=16)
    return Engine(executor, FCFSPolicy(preemption=preemption), config)


@pytest.mark.parametrize("preemption", [KVAction.DISCARD, KVAction.SWAP])
def test_batched_paged_engine_matches_unbatched_greedy_under_preemption(
    model: PagedLlama, reference: list[list[int]], preemption: KVAction
) -> None:
    engine = _engine(model, preemption, num_device_blocks=10)  # 40 tokens: forces preemption
    tokens = _run(engine)
    assert [tokens[f"r{i}"] for i in range(len(PROMPTS))] == reference
    stats = engine.stats()
    assert stats.num_preemptions > 0
    assert stats.num_generated_tokens == sum(MAX_TOKENS)
    assert (stats.num_swap_outs > 0) == (preemption is KVAction.SWAP)


def test_seeded_sampling_repeats_and_differs_from_greedy(model: PagedLlama) -> None:
    first = _run(_engine(model, KVAction.DISCARD, 64), temperature=1.0)
    second = _run(_engine(model, KVAction.DISCARD, 64), temperature=1.0)
    greedy = _run(_engine(model, KVAction.DISCARD, 64))
    assert first == second
    assert first != greedy


def test_build_engine_stats_and_abort() -> None:
    engine = build_engine("tiny", "fcfs", num_device_blocks=8, num_host_blocks=0, block_size=4)
    a = engine.add_request([1, 2, 3], SamplingParams(max_tokens=5, ignore_eos=True))
    engine.add_request([4, 5, 6, 7, 8], SamplingParams(max_tokens=5, ignore_eos=True))
    outs = engine.step()
    assert [len(o.new_token_ids) for o in outs] == [1, 1]
    stats = engine.stats()
    assert (stats.num_running, stats.num_waiting, stats.device_blocks_used) == (2, 0, 3)
    assert (stats.device_blocks_total, stats.host_blocks_total) == (8, 0)
    assert engine.abort(a) and not engine.abort(a)
    assert engine.stats().device_blocks_used == 2
    while engine.has_unfinished():
        engine.step()
    assert engine.stats().num_finished == 2


def test_public_api_is_pinned() -> None:
    import mlsyskit.serving as serving

    assert serving.__all__ == [
        "ApiCall", "Engine", "EngineStats", "ExecutorKind", "FinishReason", "KVAction", "Policy",
        "PolicyName", "Request", "RequestOutput", "RequestStatus", "SamplingParams", "Scheduler",
        "SchedulerConfig", "StepPlan", "StepResult", "build_engine", "make_policy",
    ]
