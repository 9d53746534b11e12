from __future__ import annotations

import pytest

from mlsyskit.training.optimus import baselines, calibration
from mlsyskit.training.optimus.calibration import (
    P2P_GRID,
    encoder_seconds_per_gpu,
    fit,
    paper_linear_fit,
)
from mlsyskit.training.optimus.config import JobConfig, load_builtin
from mlsyskit.training.optimus.costmodel import Calibration, CostModel, Direction
from mlsyskit.training.optimus.reference import STRONG_SCALING_S

from .conftest import make_job

SCALES = (1536, 2048, 3072)


def _jobs() -> dict[int, JobConfig]:
    return {n: load_builtin(f"vit22b_gpt175b_{n}") for n in SCALES}


def test_paper_linear_fit_by_hand() -> None:
    # m = 32, 24, 16: slope = (T32 - T16) / 16, intercept = mean(T) - 24 * slope
    a, b = paper_linear_fit(0)
    assert a == pytest.approx((10.65 - 5.91) / 16)
    assert b == pytest.approx((10.65 + 8.26 + 5.91) / 3 - 24 * a)
    a_opt, b_opt = paper_linear_fit(2)
    assert a_opt == pytest.approx((9.80 - 4.87) / 16)
    assert b_opt < 0.0 < b  # the paper's Optimus has no fixed (fill/drain, DP) time at all


def test_encoder_seconds_per_gpu_is_num_mb_times_encoder_over_pp() -> None:
    job = make_job(pp=2, tp=2, num_mb=6, enc_layers=4)
    cm = CostModel.for_job(job, Calibration(1.0, 1.0, 1.0))
    enc = job.encoders[0]
    e = sum(cm.layer_time_s(enc.spec, enc.seq_len, 1, 2, d)
            for d in (Direction.FWD, Direction.BWD)) * 4
    assert encoder_seconds_per_gpu(job, cm) == pytest.approx(6 * e / 2)


def test_unfitted_model_reproduces_megatron_rows() -> None:
    """No fitted constant: the per-kernel model alone is within 5% of Table 5's Megatron-LM."""
    for n, job in _jobs().items():
        t = baselines.megatron(job, CostModel.for_job(job, Calibration(1.0, 1.0, 1.0)))
        assert t.iteration_s == pytest.approx(STRONG_SCALING_S[n][0], rel=0.05)


def test_fit_uses_megatron_rows_only_and_stays_physical(monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = _jobs()
    grid = {"compute_grid": (0.9, 1.0), "p2p_grid": (1.0, 8.0), "dp_grid": (1.0,)}
    first = fit(jobs, **grid)  # type: ignore[arg-type]
    assert first.calibration.p2p_scale <= max(P2P_GRID) <= 8.0
    fake = {g: (m, 100.0 * b, o) for g, (m, b, o) in STRONG_SCALING_S.items()}
    monkeypatch.setattr(calibration, "STRONG_SCALING_S", fake)
    second = fit(jobs, **grid)  # type: ignore[arg-type]
    assert second.calibration == first.calibration
    assert second.max_rel_err == pytest.approx(first.max_rel_err)
    assert second.balanced_max_rel_err > 0.9  # reported against the (faked) balanced rows
