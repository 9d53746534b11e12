"""The replay checker catches corrupted schedules (it does not trust the producer)."""

from __future__ import annotations

import dataclasses

import pytest

from mlsyskit.training.optimus import baselines
from mlsyskit.training.optimus.build import baseline_schedule, optimus_schedule
from mlsyskit.training.optimus.costmodel import CostModel, Direction
from mlsyskit.training.optimus.replay import replay
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
