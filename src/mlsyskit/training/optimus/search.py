"""Algorithm 1: for every feasible encoder plan and microbatch partition, schedule and keep
the fastest; plus the efficiency metric and the serial bound used as baselines.

Search-space pruning (stated in reports): encoder pipelines along the tensor axis see the same
bubbles, so their partitions are constrained equal (the notes' symmetry rule); every
composition is scored with the cheap coarse schedule (at most ``max_partitions`` per plan,
near-even ones first) and only the ``fine_top_k`` best go through the kernel-level fine step
(``fine_top_k=None`` runs it on all of them), on the as-soon-as-possible LLM timeline and on
the one with deferred forwards (the warm-up adjustment).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from mlsyskit.training.optimus.config import JobConfig
from mlsyskit.training.optimus.costmodel import CostModel, Stream
from mlsyskit.training.optimus.errors import OptimusError
from mlsyskit.training.optimus.planner import (
    EncoderPlan,
    compositions_balanced_first,
    require_plans,
)
from mlsyskit.training.optimus.scheduler import (
    Context,
    Evaluation,
    State,
    build_context,
    evaluate,
    initial_state,
    optimize_bwd,
    optimize_fwd,
    serial_evaluation,
)


@dataclass(frozen=True)
class Candidate:
    """One scheduled (plan, partition) with its coarse and fine results."""

    ctx: Context
    parts: tuple[int, ...]
    coarse: State
    coarse_eval: Evaluation
    fine: State
    fine_eval: Evaluation

    @property
    def plan(self) -> EncoderPlan:
        return self.ctx.plan


@dataclass(frozen=True)
class SearchResult:
    """The best fine schedule, the best coarse-only one, and search accounting."""

    best: Candidate
    best_coarse: Candidate
    num_plans: int
    num_partitions: int
    num_fine_runs: int
    runtime_s: float


def efficiency(ctx: Context, st: State, ev: Evaluation) -> float:
    """Share of encoder compute placed inside LLM bubbles, averaged over devices.

    Bubbles are those of the LLM-alone timeline T0: before the device's first LLM kernel,
    the fine gaps (always inside), and after its last kernel up to the LLM-alone iteration
    end; time by which encoder work delays the LLM does not count.
    """
    plan = ctx.plan
    hidden = [0.0] * ctx.num_devices
    total = [0.0] * ctx.num_devices
    comp = [ctx.stage_compute_s(k) for k in range(plan.pp)]
    fwd_comp = [
        sum(k.duration_s for k in w.fwd if k.stream is Stream.COMPUTE) for w in ctx.enc_stages
    ]
    for g, count in enumerate(st.parts):
        for k in range(plan.pp):
            total[plan.device(g, k)] += comp[k] * count

    def overlap(a: float, b: float, lo: float, hi: float) -> float:
        return max(0.0, min(b, hi) - max(a, lo)) / (b - a) if b > a else 0.0

    for (g, _mb, k), t in ev.pre.items():
        d = plan.device(g, k)
        hidden[d] += fwd_comp[k] * overlap(t.start, t.end, 0.0, ctx.first[d])
    for (g, _mb, k), t in ev.post.items():
        d = plan.device(g, k)
        lo = ctx.last[d] + ev.delta
        hidden[d] += (comp[k] - fwd_comp[k]) * overlap(t.start, t.end, lo, ctx.llm_end_s + ev.delta)
    for table in (st.fine_fwd, st.fine_bwd):
        for (g, _mb), op in table.items():
            for k, placements in op.stages.items():
                hidden[plan.device(g, k)] += sum(
                    e - s for s, e, stream in placements if stream is Stream.COMPUTE
                )
    used = [d for d in range(ctx.num_devices) if total[d] > 0]
    return sum(hidden[d] / total[d] for d in used) / len(used)


def serial_iteration_s(ctx: Context, parts: tuple[int, ...]) -> float:
    """Encoder-then-LLM baseline's iteration time as its producer estimates it
    (:func:`~.scheduler.serial_evaluation`; build it with ``optimus_schedule(...,
    barrier=True)`` and replay it for the checked time)."""
    return serial_evaluation(ctx, parts).makespan_s


def schedule_candidate(ctx: Context, parts: tuple[int, ...]) -> Candidate:
    """Coarse InitSchedule then OptimizeSchedule(FWD) and (BWD) for one partition."""
    coarse = initial_state(ctx, parts)
    cev = evaluate(ctx, coarse)
    if not cev.feasible:
        raise OptimusError(f"coarse schedule infeasible for partition {parts}")
    fine = initial_state(ctx, parts)
    fine, fev = optimize_fwd(ctx, fine, cev)
    fine, fev = optimize_bwd(ctx, fine, fev)
    return Candidate(ctx, parts, coarse, cev, fine, fev)


def search(
    job: JobConfig, cm: CostModel, *, fine_top_k: int | None = 3,
    plans: list[EncoderPlan] | None = None, max_partitions: int = 2000,
) -> SearchResult:
    """Algorithm 1 over every feasible encoder plan.

    At most ``max_partitions`` microbatch partitions per plan are scored, near-even ones
    first (:func:`compositions_balanced_first`); the paper enumerates all of them.

    Raises
    ------
    OptimusConfigError
        No encoder plan fits (memory, heads), with the reasons.
    OptimusError
        ``plans`` is given and empty.
    """
    started = time.perf_counter()
    plans = plans if plans is not None else require_plans(job)
    if not plans:
        raise OptimusError(f"{job.name}: no encoder plan to search")
    n = job.llm_plan.num_microbatches
    scored: list[tuple[float, Context, tuple[int, ...], State, Evaluation]] = []
    num_parts = 0
    for plan in plans:
        ctx = build_context(job, cm, plan)
        for i, parts in enumerate(compositions_balanced_first(n // plan.columns, plan.groups)):
            if i >= max_partitions:  # per plan; near-even partitions come first
                break
            num_parts += 1
            st = initial_state(ctx, parts)
            ev = evaluate(ctx, st)
            if ev.feasible:
                scored.append((ev.makespan_s, ctx, parts, st, ev))
    if not scored:
        raise OptimusError(f"{job.name}: no feasible coarse schedule")
    scored.sort(key=lambda x: x[0])
    chosen = scored if fine_top_k is None else scored[:fine_top_k]
    best: Candidate | None = None
    # The fine step also runs on the LLM timeline with deferred forwards (the paper's
    # warm-up adjustment: same LLM end, later F_i); the coarse step does not gain from it.
    deferred: dict[EncoderPlan, Context] = {}
    for _, ctx, parts, _, _ in chosen:
        if ctx.plan not in deferred:
            deferred[ctx.plan] = build_context(job, cm, ctx.plan, defer_forwards=True)
        for c in (ctx, deferred[ctx.plan]):
            cand = schedule_candidate(c, parts)
            if best is None or cand.fine_eval.makespan_s < best.fine_eval.makespan_s - 1e-12:
                best = cand
    assert best is not None
    _, cctx, cparts, cst, cev = scored[0]
    best_coarse = Candidate(cctx, cparts, cst, cev, cst, cev)
    return SearchResult(best, best_coarse, len(plans), num_parts, len(chosen),
                        time.perf_counter() - started)
