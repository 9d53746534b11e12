from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import torch

from mlsyskit.training.optimus.costmodel import Direction
from mlsyskit.training.optimus.cpu_exec import exec_list
from mlsyskit.training.optimus.cpu_model import (
    COMM,
    IslandLayer,
    LayerRun,
    kernel_names,
    run_bwd_kernel,
    run_fwd_kernel,
)
from mlsyskit.training.optimus.models import get_model

if TYPE_CHECKING:
    from mlsyskit.training.optimus.cpu_profile import RunProfile


def test_kernel_by_kernel_islands_equal_plain_autograd() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    spec = get_model("gpt-tiny")
    layer = IslandLayer(spec)
    x = torch.randn(2, 16, spec.hidden)
    gout = torch.randn(2, 16, spec.hidden)
    # reference
    xr = x.clone().requires_grad_(True)
    layer(xr).backward(gout)
    ref_x = xr.grad.clone()  # type: ignore[union-attr]
    ref_w = [p.grad.clone() for p in layer.parameters()]  # type: ignore[union-attr]
    layer.zero_grad(set_to_none=True)
    # islands
    run = LayerRun(vals={"x": x})
    for name in kernel_names(Direction.FWD):
        run_fwd_kernel(layer, run, name)
    run.grads["out"] = gout
    for name in kernel_names(Direction.BWD):
        run_bwd_kernel(run, name)
    assert torch.allclose(run.grads["x"], ref_x, rtol=1e-5, atol=1e-6)
    for p, ref in zip(layer.parameters(), ref_w, strict=True):
        assert torch.allclose(p.grad, ref, rtol=1e-5, atol=1e-6)  # type: ignore[arg-type]


def test_exec_list_matches_cost_model_kernel_count() -> None:
    enc, llm = IslandLayer(get_model("vit-tiny")), IslandLayer(get_model("gpt-tiny"))
    fwd = exec_list([(enc, False), (llm, True)], Direction.FWD)
    assert len(fwd) == (12 - len(COMM)) + 12  # encoder layers have no emulated collectives
    bwd = exec_list([(enc, False), (llm, True)], Direction.BWD)
    assert bwd[0][0] is llm and bwd[-1][0] is enc


def test_two_process_run_matches_serial_gradients() -> None:
    """The real 2-process gloo run (about 15 s): both schedules give the serial gradients."""
    from mlsyskit.training.optimus.cpu_run import CpuRunConfig, run_cpu

    res = run_cpu(CpuRunConfig(iterations=1, warmup=0))
    assert res.grads_match == {"megatron": True, "optimus": True}
    assert res.replay_violations == 0
    assert set(res.measured_s) == {"megatron", "optimus"}


def _constant_profile(kernel_s: float, p2p_s: float, overshoot_s: float) -> RunProfile:
    from mlsyskit.training.optimus.cpu_profile import RunProfile

    keys = [(spec, d, n) for spec in ("vit-tiny", "gpt-tiny") for d in Direction
            for n in kernel_names(d) if n not in COMM]
    return RunProfile({k: (kernel_s,) for k in keys}, (p2p_s,), (overshoot_s,))


def test_profiled_plan_matches_hand_computed_megatron_and_prediction() -> None:
    """1 ms islands, 1.5 ms emulated TP waits, DP AG/RS 8/12 ms, 4 microbatches: stage 0
    (8 encoder + 4 LLM layers) runs 64 + 32 islands and 16 waits per direction = 120 ms, and
    1F1B keeps it busy from the all-gather to the reduce-scatter: 8 + 4 x 240 + 12 ms."""
    from mlsyskit.training.optimus.cpu_profile import kernel_key, sampled_makespan
    from mlsyskit.training.optimus.cpu_run import CpuRunConfig, plan_schedules
    from mlsyskit.training.optimus.replay import replay
    from mlsyskit.training.optimus.schedule import Resource

    prof = _constant_profile(1e-3, 2e-4, 0.0)
    schedules, _, parts, violations = plan_schedules(CpuRunConfig(), prof)
    assert violations == 0 and sum(parts) == 4
    assert schedules["megatron"].makespan_s == pytest.approx(0.980)
    for s in schedules.values():
        assert all(kernel_key(t) in prof.kernels for t in s.tasks
                   if t.resource is Resource.COMPUTE)
        # constant samples: the prediction is the replayed plan
        assert sampled_makespan(s, prof, 2, 0) == pytest.approx(replay(s).replay_makespan_s)
    assert schedules["optimus"].makespan_s < schedules["megatron"].makespan_s
    # every emulated wait returns 0.1 ms late: stage 0 has 32 per microbatch plus AG and
    # RS and stays critical (stage 1's forward + backward, 115.2 ms, fit in one stage-0 op)
    late = _constant_profile(1e-3, 2e-4, 1e-4)
    assert sampled_makespan(schedules["megatron"], late, 2, 0) == pytest.approx(
        0.980 + 4 * 32e-4 + 2e-4)


def test_profile_stack_and_merge_pool_samples() -> None:
    from mlsyskit.training.optimus.cpu_profile import RunProfile, merge, profile_stack

    torch.set_num_threads(1)
    enc, llm = get_model("vit-tiny"), get_model("gpt-tiny")
    samples = profile_stack([(enc, 2), (llm, 1)], batch=1, seq=8, reps=2, seed=0)
    islands = [n for n in kernel_names(Direction.FWD) if n not in COMM]
    assert len(samples) == 2 * 2 * len(islands)
    assert len(samples[("vit-tiny", Direction.FWD, "qkv")]) == 2 * 2  # 2 layers x 2 reps
    assert len(samples[("gpt-tiny", Direction.BWD, "fc1")]) == 2
    a = RunProfile({("m", Direction.FWD, "qkv"): (1.0, 3.0)}, (0.5,), (0.0,))
    b = RunProfile({("m", Direction.FWD, "qkv"): (5.0,)}, (1.5,), (2.0,))
    m = merge([a, b])
    assert m.kernel_means() == {"m": {(Direction.FWD, "qkv"): 3.0}}
    assert m.p2p_mean_s == 1.0 and m.wait_overshoot == (0.0, 2.0)


def test_kernel_drift_compares_run_with_plan() -> None:
    """Kernels that ran twice as long as planned give a drift of 2 (waits do not count)."""
    import dataclasses

    from mlsyskit.training.optimus.build import baseline_schedule
    from mlsyskit.training.optimus.costmodel import Kernel, Stream
    from mlsyskit.training.optimus.cpu_run import CpuRunResult
    from mlsyskit.training.optimus.pipeline import PipelineSpec, StageWork, simulate

    st = StageWork((Kernel("f", Stream.COMPUTE, 1.0), Kernel("ag", Stream.COMM, 0.5)),
                   (Kernel("b", Stream.COMPUTE, 2.0),), 1.0, 1.0)
    spec = PipelineSpec(2, 1, 2, (st, st), 0.0, interleaved=False)
    tl = simulate(spec, [0.0, 0.0])
    s = baseline_schedule("b", tl, [0.0, 0.0], [0.0, 0.0], 1.0)
    ran = dataclasses.replace(s, tasks=tuple(
        dataclasses.replace(t, end_s=t.start_s + (2 if t.name != "ag" else 5) * t.duration_s)
        for t in s.tasks))
    res = CpuRunResult({"m": 1.0}, {"m": 1.0}, {}, {}, 0, "", (), {"m": s}, {"m": ran})
    assert res.kernel_drift == pytest.approx(2.0)


def test_cpu_run_config_names_a_bad_field() -> None:
    from mlsyskit.training.optimus.cpu_run import CpuRunConfig
    from mlsyskit.training.optimus.errors import OptimusError

    with pytest.raises(OptimusError, match="p2p_rounds must be >= 3"):
        CpuRunConfig(p2p_rounds=2)
    with pytest.raises(OptimusError, match="prediction_draws"):
        CpuRunConfig(prediction_draws=0)
    with pytest.raises(OptimusError, match="dp_rs_s must be >= 0"):
        CpuRunConfig(dp_rs_s=-1.0)
