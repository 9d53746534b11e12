"""Fit the cost model's global constants on the paper's Megatron-LM rows, within physical bounds.

Three constants (:class:`~mlsyskit.training.optimus.costmodel.Calibration`) are chosen on a
grid to minimise the largest relative error of the simulated **Megatron-LM** iteration times
against Table 5 (1,536 / 2,048 / 3,072 GPUs).  Optimus's rows are never used.

Why only Megatron-LM, and why bounded grids: with *no* fitted constant at all (every scale
1.0) the per-kernel model already lands within 4% of the paper's Megatron-LM rows, i.e. the
paper's encoder-on-stage-0 1F1B numbers are what Hopper GEMM throughput, NVLink TP
collectives and IB P2P predict.  The paper's Megatron-LM *balanced* rows are not: they are
1.7x slower than the same hardware model predicts for their interleaved (V = 12) schedule,
and the only constant that can absorb that is a ~44x P2P charge (~12 ms per 12.6 MB pipeline
hop on a 50 GB/s link), which is not physical and, applied to Optimus's interleaved LLM
pipeline too, erases any speedup.  So the grids stop at physically defensible values
(:data:`P2P_GRID` tops out at 8x = sending the full, unsharded activation instead of the
sequence-parallel shard) and the balanced error is reported, not fitted.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mlsyskit.training.optimus import baselines
from mlsyskit.training.optimus.config import JobConfig
from mlsyskit.training.optimus.costmodel import Calibration, CostModel
from mlsyskit.training.optimus.reference import STRONG_SCALING_S

COMPUTE_GRID = (0.8, 0.85, 0.9, 0.95, 1.0, 1.05)  # +-20% on Calculon's GEMM curve
P2P_GRID = (1.0, 2.0, 4.0, 8.0)  # 8x = full activation instead of the SP shard per hop
DP_GRID = (0.5, 1.0, 2.0)  # half / double the exposed first-chunk DP collectives


@dataclass(frozen=True)
class Fit:
    """The chosen constants, the errors they give, and the simulated baseline rows."""

    calibration: Calibration
    max_rel_err: float  # Megatron-LM rows (the fitted ones)
    balanced_max_rel_err: float  # Megatron-LM balanced rows (reported, not fitted)
    rows: dict[int, tuple[float, float]]  # gpus -> (Megatron-LM s, balanced s)


def megatron_rows(jobs: dict[int, JobConfig], cal: Calibration) -> dict[int, float]:
    """Simulated Megatron-LM iteration time per GPU count."""
    return {g: baselines.megatron(j, CostModel.for_job(j, cal)).iteration_s
            for g, j in jobs.items()}


def baseline_rows(jobs: dict[int, JobConfig], cal: Calibration) -> dict[int, tuple[float, float]]:
    """Simulated (Megatron-LM, balanced) iteration times per GPU count."""
    out = {}
    for gpus, job in jobs.items():
        cm = CostModel.for_job(job, cal)
        out[gpus] = (baselines.megatron(job, cm).iteration_s,
                     baselines.megatron_balanced(job, cm).iteration_s)
    return out


def rel_errs(rows: dict[int, tuple[float, float]]) -> tuple[float, float]:
    """Largest relative error of the (Megatron-LM, balanced) rows against Table 5."""
    em = max(abs(m / STRONG_SCALING_S[g][0] - 1) for g, (m, _) in rows.items())
    eb = max(abs(b / STRONG_SCALING_S[g][1] - 1) for g, (_, b) in rows.items())
    return em, eb


def max_rel_err(rows: dict[int, tuple[float, float]]) -> float:
    """Largest relative error over both baselines (what a 'baseline within X%' target checks)."""
    return max(rel_errs(rows))


def fit(
    jobs: dict[int, JobConfig], compute_grid: Sequence[float] = COMPUTE_GRID,
    p2p_grid: Sequence[float] = P2P_GRID, dp_grid: Sequence[float] = DP_GRID,
    progress: Callable[[int, int], None] | None = None,
) -> Fit:
    """Grid search on the Megatron-LM rows (deterministic; ties keep the first point)."""
    best: tuple[float, Calibration] | None = None
    grid = list(itertools.product(compute_grid, p2p_grid, dp_grid))
    for i, (c, p, d) in enumerate(grid):
        cal = Calibration(c, p, d)
        rows = megatron_rows(jobs, cal)
        err = max(abs(t / STRONG_SCALING_S[g][0] - 1) for g, t in rows.items())
        if best is None or err < best[0] - 1e-12:
            best = (err, cal)
        if progress is not None:
            progress(i + 1, len(grid))
    assert best is not None
    rows2 = baseline_rows(jobs, best[1])
    em, eb = rel_errs(rows2)
    return Fit(best[1], em, eb, rows2)


def paper_linear_fit(system: int) -> tuple[float, float]:
    """Least-squares ``T = a * m + b`` over Table 5's three rows of one system.

    ``system`` indexes :data:`STRONG_SCALING_S` rows (0 Megatron-LM, 1 balanced, 2 Optimus);
    ``m`` is the number of microbatches per pipeline.  Under 1F1B, ``a`` is the bottleneck
    stage's time per microbatch and ``b`` the pipeline fill/drain plus exposed DP time, which
    is what the docs use to show which rows a shared cost model can and cannot explain.
    """
    from mlsyskit.training.optimus.reference import MICROBATCHES

    xs = [float(MICROBATCHES[g]) for g in STRONG_SCALING_S]
    ys = [STRONG_SCALING_S[g][system] for g in STRONG_SCALING_S]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    a = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs)
    return a, my - a * mx


def encoder_seconds_per_gpu(job: JobConfig, cm: CostModel) -> float:
    """One GPU's share of an iteration's encoder compute (forward + backward).

    Whatever the encoder plan, the encoder's kernel time is spread over the PP stages of an
    LLM pipeline, so per GPU it is ``num_mb * e / pp`` with ``e`` the encoder's time per
    microbatch at the LLM's TP degree.  Hiding all of it is the most any bubble schedule can
    gain over a baseline whose LLM pipeline is as fast as Optimus's.
    """
    from mlsyskit.training.optimus.costmodel import Direction

    plan = job.llm_plan
    e = 0.0
    for part in job.encoders:
        for d in (Direction.FWD, Direction.BWD):
            e += part.spec.num_layers * cm.layer_time_s(part.spec, part.seq_len,
                                                        plan.microbatch_size, plan.tp, d)
    return plan.num_microbatches * e / plan.pp
