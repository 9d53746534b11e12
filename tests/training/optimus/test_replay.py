"""The replay checker catches corrupted schedules (it does not trust the producer)."""

from __future__ import annotations

import dataclasses

import pytest

from mlsyskit.training.optimus import baselines
from mlsyskit.training.optimus.build import baseline_schedule, optimus_schedule
from mlsyskit.training.optimus.costmodel import CostModel, Direction
from mlsyskit.training.optimus.replay import reexecute, replay
from mlsyskit.training.optimus.schedule import Owner, Resource, Schedule
from mlsyskit.training.optimus.search import search

from .conftest import make_job


@pytest.fixture(scope="module")
def fine() -> Schedule:
    job = make_job(pp=2, tp=2, virtual=1, num_mb=4, enc_layers=4)
    best = search(job, CostModel.for_job(job), fine_top_k=1).best
    return optimus_schedule("fine", best.ctx, best.fine, best.fine_eval)


def _replace(s: Schedule, tid: int, start: float) -> Schedule:
    tasks = list(s.tasks)
    t = tasks[tid]
    tasks[tid] = dataclasses.replace(t, start_s=start, end_s=start + t.duration_s)
    return dataclasses.replace(s, tasks=tuple(tasks))


def test_valid_schedule_has_no_violations(fine: Schedule) -> None:
    rep = replay(fine)
    assert rep.violations == []
    assert rep.replay_makespan_s == pytest.approx(fine.makespan_s, rel=0.01)


def test_overlap_on_compute_stream_is_caught(fine: Schedule) -> None:
    enc = next(t for t in fine.tasks if t.owner is Owner.ENCODER and t.resource is Resource.COMPUTE)
    llm = next(t for t in fine.tasks if t.owner is Owner.LLM and t.resource is Resource.COMPUTE
               and t.device == enc.device)
    rep = replay(_replace(fine, enc.tid, llm.start_s))
    assert any("overlap" in v for v in rep.violations)


def test_llm_forward_before_its_encoder_output_is_caught(fine: Schedule) -> None:
    first = min((t for t in fine.tasks if t.owner is Owner.LLM and t.stage == 0
                 and t.direction is Direction.FWD and t.mb == 0 and t.index == 0),
                key=lambda t: t.start_s)
    rep = replay(_replace(fine, first.tid, 0.0))
    assert any("EF > F" in v for v in rep.violations)


def test_encoder_backward_before_llm_gradient_is_caught(fine: Schedule) -> None:
    enc_b = next(t for t in fine.tasks if t.owner is Owner.ENCODER
                 and t.direction is Direction.BWD and t.index == 0)
    rep = replay(_replace(fine, enc_b.tid, 0.0))
    assert any("EB < B" in v or "stage order" in v or "kernel order" in v
               for v in rep.violations)


def test_baseline_schedules_replay_exactly() -> None:
    job = make_job(pp=4, tp=2, virtual=2, num_mb=8)
    cm = CostModel.for_job(job)
    for run in (baselines.megatron(job, cm), baselines.megatron_balanced(job, cm)):
        s = baseline_schedule(run.name, run.timeline, run.dp.ag_s, run.dp.rs_s, run.iteration_s)
        rep = replay(s)
        assert rep.violations == []
        assert rep.replay_makespan_s == pytest.approx(run.iteration_s, rel=1e-9)


def _dp_at_zero_without_edges(s: Schedule) -> Schedule:
    """The reviewer's manipulation: drop every DP edge and run each device's DP collectives
    (AG_enc, AG_llm, RS_llm, RS_enc) back to back from t = 0."""
    dp = {t.tid for t in s.tasks if t.owner is Owner.DP}
    tasks = list(s.tasks)
    for d in range(s.num_devices):
        t_ = 0.0
        for t in sorted((t for t in tasks if t.tid in dp and t.device == d),
                        key=lambda t: t.index):
            tasks[t.tid] = dataclasses.replace(t, start_s=t_, end_s=t_ + t.duration_s)
            t_ += t.duration_s
    deps = tuple(d for d in s.deps if d.before not in dp and d.after not in dp)
    return dataclasses.replace(s, tasks=tuple(tasks), deps=deps)


def test_reduce_scatter_before_last_backward_is_caught(fine: Schedule) -> None:
    rep = replay(_dp_at_zero_without_edges(fine))
    for d in range(fine.num_devices):
        for owner in ("llm", "encoder"):
            assert any(v.startswith(f"device {d}: DP reduce-scatter of {owner} gradients")
                       for v in rep.violations)
    # the replay re-executes with its own DP rules, not the producer's (dropped) edges
    assert rep.replay_makespan_s == pytest.approx(replay(fine).replay_makespan_s, rel=1e-9)


def test_all_gather_after_first_forward_is_caught(fine: Schedule) -> None:
    ag = next(t for t in fine.tasks if t.name == "dp_ag_llm" and t.device == 0)
    first_fwd = min(t.start_s for t in fine.tasks if t.owner is Owner.LLM and t.device == 0)
    rep = replay(_replace(fine, ag.tid, first_fwd))
    assert any(v.startswith("device 0: DP all-gather of llm parameters") for v in rep.violations)


def test_dp_collective_without_metadata_is_caught(fine: Schedule) -> None:
    rs = next(t for t in fine.tasks if t.name == "dp_rs_enc")
    tasks = list(fine.tasks)
    tasks[rs.tid] = dataclasses.replace(rs, params_of=None)
    rep = replay(dataclasses.replace(fine, tasks=tuple(tasks)))
    assert any("does not say whose parameters" in v for v in rep.violations)
    assert any(f"device {rs.device}: no DP reduce-scatter of encoder" in v
               for v in rep.violations)


def test_release_times_are_honoured_and_checked() -> None:
    """A task released at t starts no earlier in the replay, and one scheduled before its
    release is a violation (hand-built: two LLM stages' first op is released late)."""
    job = make_job(pp=2, tp=1, virtual=1, num_mb=2)
    run = baselines.megatron(job, CostModel.for_job(job))
    s = baseline_schedule(run.name, run.timeline, run.dp.ag_s, run.dp.rs_s, run.iteration_s)
    first = min((t for t in s.tasks if t.owner is Owner.LLM and t.device == 0),
                key=lambda t: t.start_s)
    tasks = list(s.tasks)
    tasks[first.tid] = dataclasses.replace(first, release_s=first.start_s + 1.0)
    late = dataclasses.replace(s, tasks=tuple(tasks))
    rep = replay(late)
    assert any("starts before its release time" in v for v in rep.violations)
    assert reexecute(late)[first.tid][0] == pytest.approx(first.start_s + 1.0)
    assert rep.replay_makespan_s == pytest.approx(run.iteration_s + 1.0, rel=1e-9)
