"""The Python API: run a job with TrainMover and move, kill or rebalance its ranks.

Example
-------
>>> from mlsyskit.training.trainmover import JobConfig, TrainMoverJob
>>> config = JobConfig(num_workers=3, num_standby=1, steps=200,
...                    task="my_project.train:make_task")       # your TrainTask factory
>>> with TrainMoverJob(config) as job:                            # doctest: +SKIP
...     job.wait_for_iteration(20)
...     result = job.migrate(rank=1)                               # planned maintenance
...     print(f"stayers stalled {result.downtime_s:.3f} s")
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from mlsyskit.training.trainmover.config import JobConfig
from mlsyskit.training.trainmover.controller import Controller
from mlsyskit.training.trainmover.protocol import EventKind, ReplacementResult
from mlsyskit.training.trainmover.strategies import LiveMigration, ReplacementStrategy
from mlsyskit.training.trainmover.timeline import find_straggler, loss_curve


class TrainMoverJob:
    """A training job whose ranks can be replaced while it runs.

    Parameters
    ----------
    config
        The job (workers, standbys, pipeline stages, the task to train).
    strategy
        How replacements are done; TrainMover's live migration by default. Pass a baseline
        (``SaveRestart()``, ``CheckpointRestart(every=10)``) to compare on the same job.
    run_dir
        Logs, recordings and checkpoints; a temporary folder by default.
    """

    def __init__(
        self,
        config: JobConfig,
        strategy: ReplacementStrategy | None = None,
        run_dir: Path | None = None,
    ) -> None:
        self.strategy = strategy or LiveMigration()
        self.config = self.strategy.job_config(config)
        self._tmp = None if run_dir else tempfile.TemporaryDirectory(prefix="trainmover-")
        self.run_dir = run_dir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.controller = Controller(self.config, self.run_dir)

    def __enter__(self) -> TrainMoverJob:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.shutdown()
        if self._tmp is not None:
            self._tmp.cleanup()

    def wait_for_iteration(self, iteration: int, timeout_s: float = 120.0) -> None:
        """Block until every rank completed ``iteration`` iterations."""
        self.controller.wait_progress(iteration, timeout_s)

    def wait_ready(self) -> None:
        """Block until the standbys are up and warm (their warm-up runs off the critical path)."""
        self.controller.wait_standbys()

    def migrate(self, rank: int) -> ReplacementResult:
        """Planned move of ``rank`` (maintenance): joiner in, leaver out, no restart."""
        return self.strategy.planned(self.controller, rank)

    def kill(self, rank: int) -> ReplacementResult:
        """SIGKILL ``rank``'s process, let the job detect it and recover; returns the cost."""
        t_kill = self.controller.kill(rank)
        dead, _ = self.controller.detect_failure()
        return self.strategy.failure(self.controller, dead, t_kill)

    def slow_down(self, rank: int, extra_s: float) -> None:
        """Inject a straggler: ``rank`` computes ``extra_s`` longer every iteration."""
        self.controller.set_slowdown(rank, extra_s)

    def straggler(self, window: int = 5, threshold: float = 1.2) -> int | None:
        """The rank computing more than ``threshold`` times slower than the others, or None
        (see :func:`~mlsyskit.training.trainmover.timeline.find_straggler`)."""
        ctl = self.controller
        return find_straggler(ctl.steps(), ctl.members, window, threshold)

    def rebalance(self, window: int = 5, threshold: float = 1.2) -> ReplacementResult | None:
        """Move the straggler (if any) to a standby; None when no rank is slow."""
        rank = self.straggler(window, threshold)
        if rank is None:
            return None
        result = self.strategy.planned(self.controller, rank)
        return ReplacementResult(**{**result.__dict__, "event": EventKind.STRAGGLER})

    def finish(self, timeout_s: float = 300.0) -> dict[int, float]:
        """Wait for the last iteration; returns the loss curve (iteration -> loss)."""
        self.controller.wait_finished(timeout_s)
        return loss_curve(self.controller.steps())

    def loss_curve(self) -> dict[int, float]:
        return loss_curve(self.controller.steps())

    def status(self) -> dict[str, object]:
        return self.controller.status()
