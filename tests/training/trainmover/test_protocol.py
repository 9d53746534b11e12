"""The replacement state machine, plans and config validation (no processes)."""

from __future__ import annotations

import itertools

import pytest

from mlsyskit.errors import ConfigError
from mlsyskit.training.trainmover import __all__ as public
from mlsyskit.training.trainmover.config import JobConfig
from mlsyskit.training.trainmover.errors import TrainMoverError
from mlsyskit.training.trainmover.protocol import (
    Plan,
    PlanKind,
    ReplacementState,
    ReplacementTracker,
)
from mlsyskit.training.trainmover.task import load_task

S = ReplacementState


def _tracker() -> ReplacementTracker:
    ticks = itertools.count()
    return ReplacementTracker(7, clock=lambda: float(next(ticks)))


def test_planned_lifecycle_records_each_state_once_in_order() -> None:
    tracker = _tracker()
    for state in (S.PREPARING, S.READY, S.SWITCHING, S.DONE):
        tracker.advance(state)
    assert [s for s, _ in tracker.history] == [
        S.REQUESTED, S.PREPARING, S.READY, S.SWITCHING, S.DONE,
    ]
    assert tracker.entered(S.SWITCHING) == 3.0
    assert tracker.entered(S.ABORTED) is None
    assert tracker.state.final


def test_recover_goes_straight_to_switching() -> None:
    tracker = _tracker()
    tracker.advance(S.SWITCHING)
    tracker.advance(S.DONE)
    assert tracker.state is S.DONE


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        ((S.PREPARING, S.ABORTED), S.DONE),  # an aborted move never completes
        ((S.PREPARING,), S.SWITCHING),  # no switch before every member is ready
        ((S.PREPARING, S.READY, S.SWITCHING), S.ABORTED),  # past the switch: recover, not abort
        ((S.SWITCHING, S.DONE), S.FAILED),
    ],
)
def test_illegal_transitions_raise(path: tuple[ReplacementState, ...], bad: ReplacementState) -> (
    None
):
    tracker = _tracker()
    for state in path:
        tracker.advance(state)
    with pytest.raises(TrainMoverError, match=f"-> {bad.value}"):
        tracker.advance(bad)


def test_final_states() -> None:
    assert {s for s in S if s.final} == {S.DONE, S.ABORTED, S.FAILED}


def test_plan_json_round_trip() -> None:
    plan = Plan(3, PlanKind.MIGRATE, ("w0", "s1", "w2"), "w1", "s1", 1, True, True)
    again = Plan.from_json(plan.to_json())
    assert again == plan
    assert again.prefix == "p3"


def test_config_validation_and_layout() -> None:
    config = JobConfig(num_workers=4, pp=2)
    assert config.dp == 2
    assert [config.stage_of(r) for r in range(4)] == [0, 0, 1, 1]
    assert [config.dp_rank_of(r) for r in range(4)] == [0, 1, 0, 1]
    assert JobConfig.from_json(config.to_json()) == config
    with pytest.raises(ConfigError, match="multiple of pp"):
        JobConfig(num_workers=3, pp=2)
    with pytest.raises(ConfigError, match="pp must be 1 or 2"):
        JobConfig(pp=3)
    with pytest.raises(ConfigError, match="checkpoint_every"):
        JobConfig(checkpoint_every=-1)


def test_task_spec_errors_name_the_problem() -> None:
    config = JobConfig()
    with pytest.raises(ConfigError, match="must look like"):
        load_task("no_colon", config)
    with pytest.raises(ConfigError, match="cannot import"):
        load_task("not_a_module_xyz:f", config)
    with pytest.raises(ConfigError, match="no callable 'nope'"):
        load_task("mlsyskit.training.trainmover.task:nope", config)


def test_public_api_is_pinned() -> None:
    assert public == sorted(public)
    assert {"TrainMoverJob", "ReplacementStrategy", "ReplacementResult", "JobConfig"} <= set(
        public
    )
