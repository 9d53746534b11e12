from __future__ import annotations

import pytest

from mlsyskit.serving.clock import SimClock
from mlsyskit.serving.engine import Engine, build_engine
from mlsyskit.serving.executor import CostModel, CostParams, SimExecutor
from mlsyskit.serving.model import get_model_config
from mlsyskit.serving.policy import FCFSPolicy, KVAction, Policy
from mlsyskit.serving.request import ApiCall, SamplingParams
from mlsyskit.serving.runner import run_workload
from mlsyskit.serving.scheduler import SchedulerConfig
from mlsyskit.serving.workload import RequestSpec, synthetic_workload

ONE_SECOND_STEPS = CostParams(overhead_s=1.0, s_per_seq=0, s_per_flop=0, s_per_attn_flop=0,
                              s_per_byte=0)


def _sim_engine(policy: Policy | None = None) -> Engine:
    cost = CostModel(get_model_config("tiny"), ONE_SECOND_STEPS)
    ex = SimExecutor(cost, num_device_blocks=64, num_host_blocks=64, block_size=4)
    return Engine(ex, policy or FCFSPolicy(), SchedulerConfig(max_num_seqs=4), SimClock())


def test_simulated_times_by_hand_with_one_second_steps() -> None:
    specs = [RequestSpec("a", 0.5, 10, 3), RequestSpec("b", 10.0, 4, 1)]
    metrics = {m.request_id: m for m in run_workload(_sim_engine(), specs)}
    a, b = metrics["a"], metrics["b"]
    # a: steps at 0.5-1.5 (prefill + token 1), 1.5-2.5, 2.5-3.5; then idle until b at 10
    assert (a.first_token_s, a.finish_s, a.ttft_s, a.tpot_s) == (1.5, 3.5, 1.0, 1.0)
    assert (b.first_token_s, b.finish_s) == (11.0, 11.0)


def test_api_call_pauses_the_request_on_the_simulated_clock() -> None:
    spec = RequestSpec("a", 0.0, 8, 4, api_calls=(ApiCall(2, duration_s=5.0, num_return_tokens=3),))
    (m,) = run_workload(_sim_engine(Policy(api_action=KVAction.PRESERVE)), [spec])
    # tokens at 1 and 2; the call runs 2..7; then 3 returned tokens + 1 pending: 7..8, 8..9
    assert (m.first_token_s, m.finish_s, m.num_output_tokens) == (1.0, 9.0, 4)


@pytest.mark.parametrize("policy", ["fcfs", "sjf"])
def test_a_paper_scale_simulation_serves_everyone(policy: str) -> None:
    engine = build_engine("llama-3-8b", policy, executor="sim", hardware="a10g",
                          num_device_blocks=300, max_num_seqs=32)
    specs = synthetic_workload(300, 6.0, seed=2)
    metrics = run_workload(engine, specs)
    assert sorted(m.request_id for m in metrics) == sorted(s.request_id for s in specs)
    lengths = {s.request_id: s.num_output_tokens for s in specs}
    assert all(m.num_output_tokens == lengths[m.request_id] for m in metrics)
    stats = engine.stats()
    assert stats.num_preemptions > 0  # 300 blocks of 16 tokens: memory pressure
    assert stats.num_generated_tokens == sum(lengths.values())
    assert stats.device_blocks_used == 0


def test_sjf_lowers_mean_latency_under_queueing() -> None:
    specs = synthetic_workload(300, 8.0, seed=4)
    means = {}
    for policy in ("fcfs", "sjf"):
        engine = build_engine("llama-3-8b", policy, executor="sim", hardware="a10g",
                              max_num_seqs=8)
        ms = run_workload(engine, specs)
        means[policy] = sum(m.latency_s for m in ms) / len(ms)
    assert means["sjf"] < means["fcfs"]


def test_stats_show_a_paused_request_and_its_preserved_blocks() -> None:
    engine = _sim_engine(Policy(api_action=KVAction.PRESERVE))
    engine.add_request(num_prompt_tokens=8, sampling=SamplingParams(max_tokens=4, ignore_eos=True),
                       api_calls=[ApiCall(1, duration_s=5.0, num_return_tokens=1)])
    engine.run_step()  # prefill + first token, then the call starts
    stats = engine.stats()
    assert (stats.num_paused, stats.num_running, stats.num_waiting) == (1, 0, 0)
    assert stats.device_blocks_used == 2  # the 8 computed tokens; the 9th is not cached yet
    assert engine.step() == [] and engine.last_step_idle
    assert engine.next_event_time() == 6.0
