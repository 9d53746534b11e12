"""The simulated engines: NEO, FastDecode+ and device-only through the same Engine."""

from __future__ import annotations

import math

import pytest

from mlsyskit.errors import BenchmarkError, ConfigError, UnknownNameError
from mlsyskit.serving.neo.engine import SETUPS, DeviceOnly, build_sim_engine, get_setup
from mlsyskit.serving.neo.loadtest import (
    RECOMPUTE,
    VLLM_256,
    VLLM_512,
    SteadyThroughput,
    System,
    capacity,
    compare,
    steady_offline_throughput,
    window_rate,
)
from mlsyskit.serving.neo.scheduler import NeoConfig, NeoScheduler, OffloadMode
from mlsyskit.serving.neo.sim import NeoSimExecutor
from mlsyskit.serving.neo.workloads import NeoWorkload, neo_workload
from mlsyskit.serving.plan import StepPlan, StepResult
from mlsyskit.serving.policy import KVAction
from mlsyskit.serving.runner import run_workload
from mlsyskit.serving.workload import RequestSpec


def test_t4_pool_is_the_papers_864_tokens() -> None:
    dev, host = SETUPS["t4-7b"].pools()
    assert dev * 16 == 864
    # 20 GB of swap over 512 KiB per token (Llama-2-7B fp16) = 40960 tokens = 2560 blocks
    assert host == 2560


@pytest.mark.parametrize("offload", list(OffloadMode))
def test_every_request_finishes_on_the_t4(offload: OffloadMode) -> None:
    engine = build_sim_engine("t4-7b", offload)
    specs = neo_workload(NeoWorkload.SUMMARIZATION, 30, math.inf, seed=3)
    done = run_workload(engine, specs, oracle_hints=False)
    assert sorted(m.request_id for m in done) == sorted(s.request_id for s in specs)
    assert all(m.num_output_tokens == s.num_output_tokens
               for m, s in zip(sorted(done, key=lambda m: m.request_id),
                               sorted(specs, key=lambda s: s.request_id), strict=True))
    assert engine.block_manager.device.num_used == 0
    assert engine.block_manager.host.num_used == 0


def test_neo_beats_device_only_offline_on_the_t4() -> None:
    """With 864 tokens of device KV, host decodes must raise offline throughput (sim clock)."""
    spans = {}
    for offload in (OffloadMode.NONE, OffloadMode.NEO):
        engine = build_sim_engine("t4-7b", offload)
        specs = neo_workload(NeoWorkload.SUMMARIZATION, 40, math.inf, seed=1)
        done = run_workload(engine, specs, oracle_hints=False)
        spans[offload] = max(m.finish_s for m in done)
        if offload is OffloadMode.NEO:
            sched = engine.scheduler
            assert isinstance(sched, NeoScheduler)
            assert sched.neo_counters().num_pipelined_steps > 0
            ex = engine.executor
            assert isinstance(ex, NeoSimExecutor)
            # the scheduler's tables interpolate the roofline the executor charges
            assert all(abs(p - c) <= 0.02 * c for p, c in ex.predictions)
    assert spans[OffloadMode.NEO] < spans[OffloadMode.NONE]


def test_unknown_setup_lists_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match="t4-7b"):
        get_setup("t5")


def test_window_rate_counts_finishes_inside_the_window() -> None:
    finish = [1.0, 2.0, 2.5, 3.9, 4.0, 6.0]
    # [2, 4) holds 2.0, 2.5 and 3.9
    assert window_rate(finish, 2.0, 4.0) == pytest.approx(3 / 2)
    with pytest.raises(BenchmarkError, match="empty measurement window"):
        window_rate(finish, 4.0, 4.0)


def test_steady_drift_compares_the_window_halves() -> None:
    assert SteadyThroughput(2.0, (1.0, 3.0), 1.5, 0.1).drift == pytest.approx(1.0)
    assert SteadyThroughput(2.0, (2.0, 2.0), 1.5, 0.1).drift == 0.0


def test_steady_offline_throughput_counts_the_middle_of_one_offline_run() -> None:
    """The window rate is the finishes in [0.3 T, 0.7 T) of the same run that capacity() times."""
    def make(n: int, rate: float, seed: int) -> list[RequestSpec]:
        return neo_workload(NeoWorkload.SUMMARIZATION, n, rate, seed=seed)

    setup = SETUPS["t4-7b"]
    st = steady_offline_throughput(setup, OffloadMode.NONE, make, 60, seed=1)
    done = run_workload(build_sim_engine(setup, OffloadMode.NONE, seed=1),
                        make(60, math.inf, 1), oracle_hints=False)
    end = max(m.finish_s for m in done)
    inside = sum(1 for m in done if 0.3 * end <= m.finish_s < 0.7 * end)
    assert st.rate_rps == pytest.approx(inside / (0.4 * end))
    assert st.whole_run_rps == pytest.approx(capacity(setup, OffloadMode.NONE, make, 60, seed=1))
    mid = 0.5 * end
    first = sum(1 for m in done if 0.3 * end <= m.finish_s < mid) / (0.2 * end)
    second = sum(1 for m in done if mid <= m.finish_s < 0.7 * end) / (0.2 * end)
    assert st.halves == (pytest.approx(first), pytest.approx(second))
    with pytest.raises(BenchmarkError, match="drop"):
        steady_offline_throughput(setup, OffloadMode.NONE, make, 60, drop=0.5)


def test_device_only_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="chunk_tokens"):
        DeviceOnly(chunk_tokens=0)
    with pytest.raises(ConfigError, match="swap or discard"):
        DeviceOnly(preemption=KVAction.PRESERVE)
    with pytest.raises(ConfigError, match="not neo"):
        build_sim_engine("t4-7b", OffloadMode.NEO, device_only=DeviceOnly(chunk_tokens=256))
    with pytest.raises(ConfigError, match="not none"):
        build_sim_engine("t4-7b", OffloadMode.NONE, neo=NeoConfig.paper())


@pytest.mark.parametrize(("system", "budget", "swaps"),
                         [(VLLM_256, 256, True), (RECOMPUTE, 4096, False)])
def test_device_only_baselines_chunk_and_preempt_as_configured(
    system: System, budget: int, swaps: bool, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """vLLM-256 never batches more than 256 tokens; recompute preempts without swapping."""
    engine = system.engine(SETUPS["t4-7b"], seed=1)
    assert engine.config.max_num_batched_tokens == budget
    step_tokens: list[int] = []
    execute = engine.executor.execute

    def spy(plan: StepPlan) -> StepResult:
        step_tokens.append(sum(plan.num_new_tokens))
        return execute(plan)

    monkeypatch.setattr(engine.executor, "execute", spy)
    specs = neo_workload(NeoWorkload.SUMMARIZATION, 40, math.inf, seed=1)
    done = run_workload(engine, specs, oracle_hints=False)
    assert len(done) == 40
    stats = engine.stats()
    # 864 tokens of device KV for 40 requests of ~420 tokens: preemption must happen
    assert stats.num_preemptions > 0
    assert (stats.num_swap_outs > 0) is swaps
    # prompts reach 589 tokens, so vLLM-256 must have split some of them
    assert max(step_tokens) <= budget
    assert (max(step_tokens) > 256) is (budget > 256)


def test_compare_names_each_system_and_rejects_duplicates() -> None:
    def make(n: int, rate: float, seed: int) -> list[RequestSpec]:
        return neo_workload(NeoWorkload.SUMMARIZATION, n, rate, seed=seed)

    comp = compare(SETUPS["t4-7b"], make, workload="s", systems=(VLLM_512,), num_requests=20,
                   fractions=(0.5, 1.0), max_extra_points=0)
    assert list(comp.rates) == ["none", "vllm-512"]
    twin = System(OffloadMode.NEO, label="vllm-512")
    with pytest.raises(BenchmarkError, match="share a name"):
        compare(SETUPS["t4-7b"], make, workload="s", systems=(VLLM_512, twin), num_requests=20)


def test_a_short_offline_neo_run_is_flagged_as_not_steady() -> None:
    """The steadiness check can fail: 300 requests at t=0 on g5.16xlarge end while NEO (paper
    rules) is still filling its host pool, so no request finishes in the window's first half;
    device-only fills its small device pool at once and is steady."""
    from mlsyskit.serving.neo.bench import MAX_STEADY_DRIFT, PAPER_NEO

    def make(n: int, rate: float, seed: int) -> list[RequestSpec]:
        return neo_workload(NeoWorkload.SYNTHETIC, n, rate, output_len=400, seed=seed)

    setup = SETUPS["a10g-8b-16"]
    neo = steady_offline_throughput(setup, PAPER_NEO, make, 300)
    base = steady_offline_throughput(setup, OffloadMode.NONE, make, 300)
    assert neo.halves[0] == 0.0 and neo.drift > MAX_STEADY_DRIFT
    assert base.drift < MAX_STEADY_DRIFT


def test_offline_case_gains_and_steadiness_by_hand() -> None:
    from mlsyskit.serving.neo.bench import OfflineCase

    def st(rate: float, halves: tuple[float, float] | None = None) -> SteadyThroughput:
        return SteadyThroughput(rate, halves or (rate, rate), rate, 0.1)

    case = OfflineCase(st(3.0), {"none": st(2.0), "vllm-256": st(2.5), "vllm-512": st(1.5)})
    assert case.gain() == pytest.approx(0.5)
    assert case.gain_vs_best() == pytest.approx(3.0 / 2.5 - 1)
    assert case.steady
    # NEO's halves 20% apart: not steady
    assert not OfflineCase(st(3.0, (2.7, 3.3)), {"none": st(2.0)}).steady
    with pytest.raises(BenchmarkError, match="inside the window"):
        OfflineCase(st(3.0), {"none": st(0.0)}).gain()
