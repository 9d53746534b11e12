"""Fit the cost model's global constants on the paper's *baseline* rows only.

Three constants (:class:`~mlsyskit.training.optimus.costmodel.Calibration`) are chosen on a
grid to minimise the largest relative error of the simulated Megatron-LM and Megatron-LM
balanced iteration times against Table 5 (1,536 / 2,048 / 3,072 GPUs).  Optimus's rows are
not used.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mlsyskit.training.optimus import baselines
from mlsyskit.training.optimus.config import JobConfig
from mlsyskit.training.optimus.costmodel import Calibration, CostModel
from mlsyskit.training.optimus.reference import STRONG_SCALING_S

COMPUTE_GRID = (0.8, 0.9, 1.0)
P2P_GRID = (1.0, 8.0, 16.0, 24.0, 32.0, 36.0, 40.0, 44.0, 48.0)
DP_GRID = (0.5, 1.0, 2.0)


@dataclass(frozen=True)
class Fit:
    """The chosen constants, the error they give, and the simulated baseline rows."""

    calibration: Calibration
    max_rel_err: float
    rows: dict[int, tuple[float, float]]  # gpus -> (Megatron-LM s, balanced s)


def baseline_rows(jobs: dict[int, JobConfig], cal: Calibration) -> dict[int, tuple[float, float]]:
    """Simulated (Megatron-LM, balanced) iteration times per GPU count."""
    out = {}
    for gpus, job in jobs.items():
        cm = CostModel.for_job(job, cal)
        out[gpus] = (baselines.megatron(job, cm).iteration_s,
                     baselines.megatron_balanced(job, cm).iteration_s)
    return out


def max_rel_err(rows: dict[int, tuple[float, float]]) -> float:
    errs = []
    for gpus, (m, b) in rows.items():
        pm, pb, _ = STRONG_SCALING_S[gpus]
        errs += [abs(m / pm - 1), abs(b / pb - 1)]
    return max(errs)


def fit(
    jobs: dict[int, JobConfig], compute_grid: Sequence[float] = COMPUTE_GRID,
    p2p_grid: Sequence[float] = P2P_GRID, dp_grid: Sequence[float] = DP_GRID,
    progress: Callable[[int, int], None] | None = None,
) -> Fit:
    """Grid search of the three constants (deterministic; ties keep the first point)."""
    best: Fit | None = None
    grid = list(itertools.product(compute_grid, p2p_grid, dp_grid))
    for i, (c, p, d) in enumerate(grid):
        cal = Calibration(c, p, d)
        rows = baseline_rows(jobs, cal)
        err = max_rel_err(rows)
        if best is None or err < best.max_rel_err:
            best = Fit(cal, err, rows)
        if progress is not None:
            progress(i + 1, len(grid))
    assert best is not None
    return best
