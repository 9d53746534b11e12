"""Typed, frozen configuration of a TrainMover job (parsed once at the CLI/API edge)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from mlsyskit.errors import ConfigError

LAUNCHERS = ("controller", "torchrun")


@dataclass(frozen=True)
class JobConfig:
    """One training job: its layout, its model, its data and its fault-tolerance knobs.

    Parameters
    ----------
    num_workers
        Training processes (ranks). With ``pp == 2`` it must be even: ``num_workers // 2``
        data-parallel replicas per pipeline stage.
    num_standby
        Standby processes started with the job (warm: sandbox warm-up done ahead of time).
    pp
        Pipeline stages, 1 (pure data parallel) or 2 (first and last stage roles).
    steps
        Iterations to train; workers exit after the last one.
    task
        ``"module:function"`` returning a :class:`~mlsyskit.training.trainmover.task.TrainTask`;
        the default is a small MLP regression task.
    hidden, layers, batch, lr
        Model width and depth, per-rank batch size and Adam learning rate of the default task.
    seed
        Seed of the model initialisation and of the per-(iteration, replica) data order.
    checkpoint_every
        Save a checkpoint every this many iterations (0: never; the restart baseline needs it).
    warm_standby
        Whether standbys run the sandboxed warm-up (model, optimizer, shadow iterations).
    step_delay_s
        Extra sleep per iteration (0 normally); a straggler is modelled by a per-rank slowdown.
    collective_timeout_s
        Gloo timeout: how long a collective waits for a hung (not dead) peer.
    launcher
        ``"controller"``: the controller starts and watches every process (TrainMover and the
        supervisor baselines); ``"torchrun"``: one ``torchrun --max-restarts`` agent starts the
        workers and restarts all of them on a failure (torch elastic's own recovery).
    """

    num_workers: int = 3
    num_standby: int = 1
    pp: int = 1
    steps: int = 60
    task: str = "mlsyskit.training.trainmover.task:mlp_task"
    hidden: int = 256
    layers: int = 4
    batch: int = 32
    lr: float = 1e-3
    seed: int = 0
    checkpoint_every: int = 0
    warm_standby: bool = True
    step_delay_s: float = 0.0
    collective_timeout_s: float = 20.0
    launcher: str = "controller"

    def __post_init__(self) -> None:
        if self.launcher not in LAUNCHERS:
            raise ConfigError(f"launcher must be one of {LAUNCHERS}; got {self.launcher!r}")
        if self.pp not in (1, 2):
            raise ConfigError(f"pp must be 1 or 2; got {self.pp}")
        if self.num_workers < self.pp or self.num_workers % self.pp:
            raise ConfigError(
                f"num_workers ({self.num_workers}) must be a positive multiple of pp ({self.pp})"
            )
        if self.num_standby < 0 or self.steps < 1 or self.layers < 2 or self.hidden < 1:
            raise ConfigError(
                f"bad sizes: num_standby={self.num_standby}, steps={self.steps}, "
                f"layers={self.layers}, hidden={self.hidden}"
            )
        if self.checkpoint_every < 0:
            raise ConfigError(f"checkpoint_every must be >= 0; got {self.checkpoint_every}")

    @property
    def dp(self) -> int:
        """Data-parallel replicas per pipeline stage."""
        return self.num_workers // self.pp

    def stage_of(self, rank: int) -> int:
        """Pipeline stage of a rank (ranks are numbered stage-major)."""
        return rank // self.dp

    def dp_rank_of(self, rank: int) -> int:
        """Replica index of a rank inside its stage."""
        return rank % self.dp

    def with_(self, **changes: object) -> JobConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> JobConfig:
        return cls(**json.loads(text))

    def save(self, path: Path) -> Path:
        path.write_text(self.to_json(), encoding="utf-8")
        return path
