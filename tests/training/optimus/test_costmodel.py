from __future__ import annotations

import pytest

from mlsyskit.training.optimus.config import load_builtin
from mlsyskit.training.optimus.costmodel import (
    NVLINK_EFFICIENCY,
    Calibration,
    CostModel,
    Direction,
    Stream,
    gemm_efficiency,
)
from mlsyskit.training.optimus.models import get_model


def test_gemm_efficiency_curve_points() -> None:
    assert gemm_efficiency(128.0, 1.0) == pytest.approx(0.95)
    assert gemm_efficiency(1000.0, 1.0) == pytest.approx(0.95)
    assert gemm_efficiency(16.0, 1.0) == pytest.approx(0.9)
    assert gemm_efficiency(16.0, 0.5) == pytest.approx(0.45)
    assert gemm_efficiency(4.0, 1.0) == pytest.approx(0.75)  # halfway in log between 1 and 16


def test_gpt175b_layer_has_two_ag_two_rs_of_hand_computed_length() -> None:
    job = load_builtin("vit22b_gpt175b_3072")
    cm = CostModel.for_job(job, Calibration(1.0, 1.0, 1.0))
    spec = get_model("gpt-175b")
    ks = cm.layer_kernels(spec, 2048, 2, 8, Direction.FWD)
    comm = [k for k in ks if k.stream is Stream.COMM]
    assert [k.name for k in comm] == ["ag1", "rs1", "ag2", "rs2"]
    bytes_full = 2 * 2048 * 12288 * 2
    expect = 7 / 8 * bytes_full / (450e9 * NVLINK_EFFICIENCY) + 7 * 1e-6
    assert comm[0].duration_s == pytest.approx(expect)
    assert 250e-6 < expect < 400e-6  # the paper's ~300 us TP bubble
    qkv = next(k for k in ks if k.name == "qkv")
    assert qkv.duration_s == pytest.approx(2 * 4096 * 12288 * 36864 / 8 / (989e12 * 0.95))


def test_backward_with_recompute_repeats_the_forward() -> None:
    job = load_builtin("vit22b_gpt175b_3072")
    cm = CostModel.for_job(job)
    spec = get_model("gpt-175b")
    fwd = cm.layer_time_s(spec, 2048, 2, 8, Direction.FWD)
    bwd = cm.layer_time_s(spec, 2048, 2, 8, Direction.BWD)
    bwd_rc = cm.layer_time_s(spec, 2048, 2, 8, Direction.BWD, recompute=True)
    assert bwd_rc == pytest.approx(bwd + fwd)
    assert 1.5 * fwd < bwd < 2.5 * fwd


def test_p2p_and_dp_scale_with_calibration() -> None:
    job = load_builtin("vit22b_gpt175b_3072")
    base = CostModel.for_job(job, Calibration(1.0, 1.0, 1.0))
    scaled = CostModel.for_job(job, Calibration(1.0, 3.0, 2.0))
    assert scaled.p2p_s(1e6) == pytest.approx(3 * base.p2p_s(1e6))
    assert scaled.dp_collective_s(1e9, 48, 2) == pytest.approx(2 * base.dp_collective_s(1e9, 48, 2))
    assert base.dp_collective_s(1e9, 1, 2) == 0.0
