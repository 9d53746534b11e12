from __future__ import annotations

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


@pytest.mark.slow
def test_two_process_run_matches_serial_gradients() -> None:
    from mlsyskit.training.optimus.cpu_run import CpuRunConfig, run_cpu

    res = run_cpu(CpuRunConfig(iterations=1, warmup=0))
    assert res.grads_match == {"megatron": True, "optimus": True}
    assert res.replay_violations == 0
    assert set(res.measured_s) == {"megatron", "optimus"}


def test_insitu_prediction_rescales_compute_kernels() -> None:
    """Doubling every profiled compute kernel doubles a pipeline with no comm or DP time."""
    from mlsyskit.training.optimus.build import baseline_schedule
    from mlsyskit.training.optimus.costmodel import Kernel, Stream
    from mlsyskit.training.optimus.cpu_run import insitu_prediction
    from mlsyskit.training.optimus.pipeline import PipelineSpec, StageWork, simulate

    st = StageWork((Kernel("f", Stream.COMPUTE, 1.0), Kernel("f2", Stream.COMPUTE, 0.5)),
                   (Kernel("b", Stream.COMPUTE, 2.0),), 1.0, 1.0)
    spec = PipelineSpec(2, 1, 4, (st, st), 0.0, interleaved=False)
    tl = simulate(spec, [0.0, 0.0])
    span = max(tl.last_end(d) for d in range(2))
    assert span == pytest.approx((4 + 1) * 3.5)
    s = baseline_schedule("b", tl, [0.0, 0.0], [0.0, 0.0], span)
    warm = [(t.tid, 10.0, 10.0 + 2 * (t.end_s - t.start_s)) for t in s.tasks]
    assert insitu_prediction(s, warm) == pytest.approx(2 * span)
    # kernels missing from the warm-up profile keep their planned time
    assert insitu_prediction(s, []) == pytest.approx(span)
