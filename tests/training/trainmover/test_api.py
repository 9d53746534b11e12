"""The Python API with a user's own task: straggler found and moved, loss curve unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlsyskit.training.trainmover import JobConfig, TrainMoverJob
from mlsyskit.training.trainmover.protocol import EventKind

TASK = "tests.training.trainmover.user_task:make_task"


@pytest.mark.slow
def test_user_task_straggler_is_rebalanced_without_changing_the_curve(tmp_path: Path) -> None:
    config = JobConfig(
        num_workers=2, num_standby=1, steps=100_000, task=TASK, step_delay_s=0.02,
        collective_timeout_s=5.0,
    )
    with TrainMoverJob(config, run_dir=tmp_path / "moved") as job:
        job.wait_ready()
        assert job.rebalance() is None  # nobody is slow yet
        job.slow_down(rank=1, extra_s=0.1)
        start = job.controller.progress()
        job.wait_for_iteration(start + 8)
        assert job.straggler() == 1
        result = job.rebalance()
        assert result is not None and result.event is EventKind.STRAGGLER and result.rank == 1
        assert job.status()["members"] == ["w0", "s0"]
        job.wait_for_iteration(result.switch_iteration + 6)
        last = job.controller.progress()
        moved = {i: v for i, v in job.loss_curve().items() if i < last}
    plain = config.with_(num_standby=0, steps=last, step_delay_s=0.0)
    with TrainMoverJob(plain, run_dir=tmp_path / "plain") as job:
        assert job.finish(timeout_s=120) == moved
