"""Real multi-process jobs: a migrated (or recovered) run equals the uninterrupted one.

Each test starts worker and standby processes through a ``Controller`` used as a context
manager, so every process is killed on exit, also when an assertion fails.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from mlsyskit.training.trainmover.config import JobConfig
from mlsyskit.training.trainmover.controller import Controller
from mlsyskit.training.trainmover.errors import ReplacementFailed
from mlsyskit.training.trainmover.protocol import EventKind, ReplacementState
from mlsyskit.training.trainmover.strategies import (
    CheckpointRestart,
    LiveMigration,
    TorchrunRestart,
)
from mlsyskit.training.trainmover.timeline import loss_curve, max_abs_diff


def small(num_workers: int, num_standby: int, **changes: object) -> JobConfig:
    return JobConfig(
        num_workers=num_workers, num_standby=num_standby, steps=100_000, hidden=32, layers=3,
        batch=8, step_delay_s=0.02, collective_timeout_s=5.0,
    ).with_(**changes)


def uninterrupted(config: JobConfig, steps: int, run_dir: Path) -> dict[int, float]:
    plain = config.with_(num_standby=0, steps=steps, step_delay_s=0.0, checkpoint_every=0)
    with Controller(plain, run_dir) as ctl:
        ctl.wait_finished(timeout_s=120)
        return loss_curve(ctl.steps())


def stop_and_curve(ctl: Controller, after: int) -> tuple[dict[int, float], int]:
    ctl.wait_progress(after, timeout_s=120)
    last = ctl.progress()
    return {i: v for i, v in loss_curve(ctl.steps()).items() if i < last}, last


def test_planned_migration_equals_uninterrupted_run(tmp_path: Path) -> None:
    config = small(2, 1)
    with Controller(config, tmp_path / "moved") as ctl:
        ctl.wait_standbys()
        ctl.wait_progress(ctl.progress() + 3)
        result = LiveMigration().planned(ctl, 1)
        assert ctl.members == ["w0", "s0"]  # the standby took rank 1
        assert ctl.procs["w1"].wait(timeout=10) == 0  # the leaver left cleanly
        moved, last = stop_and_curve(ctl, result.switch_iteration + 8)
    assert result.event is EventKind.PLANNED
    assert result.state is ReplacementState.DONE and result.attempts == 1
    assert result.breakdown_s.get("process start", 0.0) == 0.0  # the joiner was already up
    assert max_abs_diff(moved, uninterrupted(config, last, tmp_path / "plain")) == 0.0


@pytest.mark.slow
def test_failed_joiner_falls_back_to_the_next_standby(tmp_path: Path) -> None:
    config = small(2, 2)
    with Controller(config, tmp_path / "moved") as ctl:
        ctl.wait_standbys()
        ctl.inject_joiner_fault("s0", crash=True)  # s0 is taken first and dies when promoted
        result = LiveMigration().planned(ctl, 0)
        assert result.attempts == 2
        assert ctl.members == ["s1", "w1"]
        moved, last = stop_and_curve(ctl, result.switch_iteration + 8)
    assert max_abs_diff(moved, uninterrupted(config, last, tmp_path / "plain")) == 0.0


@pytest.mark.slow
def test_kill_during_migration_leaves_a_consistent_job(tmp_path: Path) -> None:
    config = small(3, 2)
    with Controller(config, tmp_path / "moved") as ctl:
        ctl.wait_standbys()
        ctl.inject_joiner_fault("s0", delay_s=3.0)  # a long phase 1 ...
        victim = ctl.procs["w0"].pid
        killed_at: list[float] = []

        def kill() -> None:
            killed_at.append(time.time())
            os.kill(victim, signal.SIGKILL)

        timer = threading.Timer(1.0, kill)  # ... and a crash in it
        timer.start()
        try:
            with pytest.raises(ReplacementFailed, match="died during the move"):
                LiveMigration().planned(ctl, 1)
        finally:
            timer.cancel()
        dead, _ = ctl.detect_failure()
        assert dead == 0
        result = LiveMigration().failure(ctl, dead, killed_at[0])
        assert ctl.members == ["s1", "w1", "w2"]  # the move was abandoned, w1 still trains
        moved, last = stop_and_curve(ctl, ctl.progress() + 8)
    assert result.event is EventKind.FAILURE
    assert max_abs_diff(moved, uninterrupted(config, last, tmp_path / "plain")) == 0.0


@pytest.mark.slow
def test_sigkill_recovery_and_checkpoint_restart_keep_the_loss_curve(tmp_path: Path) -> None:
    config = small(3, 1, checkpoint_every=5)
    with Controller(config, tmp_path / "moved") as ctl:
        ctl.wait_standbys()
        ctl.wait_progress(ctl.progress() + 3)
        t_kill = ctl.kill(2)
        dead, _ = ctl.detect_failure()
        live = LiveMigration().failure(ctl, dead, t_kill)
        t_kill = ctl.kill(0)
        dead, _ = ctl.detect_failure()
        restart = CheckpointRestart(5).failure(ctl, dead, t_kill)
        moved, last = stop_and_curve(ctl, ctl.progress() + 4)
    assert live.lost_iterations == 0
    assert 0 <= restart.lost_iterations < 5
    assert max_abs_diff(moved, uninterrupted(config, last, tmp_path / "plain")) == 0.0


@pytest.mark.slow
def test_pipeline_parallel_migration_of_the_last_stage(tmp_path: Path) -> None:
    config = small(4, 1, pp=2)
    with Controller(config, tmp_path / "moved") as ctl:
        ctl.wait_standbys()  # the general standby warmed up both stage roles
        ctl.wait_progress(ctl.progress() + 3)
        result = LiveMigration().planned(ctl, 3)
        moved, last = stop_and_curve(ctl, result.switch_iteration + 8)
    assert ctl.members[3] == "s0"
    assert max_abs_diff(moved, uninterrupted(config, last, tmp_path / "plain")) == 0.0


@pytest.mark.slow
def test_torchrun_restart_baseline_resumes_from_the_checkpoint(tmp_path: Path) -> None:
    strategy = TorchrunRestart(every=5)
    config = strategy.job_config(small(2, 0))
    with Controller(config, tmp_path / "moved") as ctl:
        ctl.wait_progress(8, timeout_s=120)
        result = strategy.failure(ctl, 1, ctl.kill(1))
        moved, last = stop_and_curve(ctl, ctl.progress() + 3)
    assert result.strategy == "torchrun-restart"
    assert 0 <= result.lost_iterations < 5
    assert max_abs_diff(moved, uninterrupted(config, last, tmp_path / "plain")) == 0.0
