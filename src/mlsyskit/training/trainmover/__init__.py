"""TrainMover: replace a machine (rank) of a running training job without restarting it.

Pieces: a :class:`Controller` (torch ``TCPStore``, membership, generations, processes), member
processes (:mod:`.worker`) that train on generation-numbered gloo groups and switch at iteration
boundaries, standbys warmed up in a sandbox on recorded collectives, and replacement strategies
(TrainMover and the restart baselines) behind one :class:`ReplacementStrategy` interface.
"""

from __future__ import annotations

from mlsyskit.training.trainmover.api import TrainMoverJob
from mlsyskit.training.trainmover.config import JobConfig
from mlsyskit.training.trainmover.controller import Controller
from mlsyskit.training.trainmover.errors import (
    JobTimeoutError,
    ReplacementFailed,
    TrainMoverError,
)
from mlsyskit.training.trainmover.protocol import (
    EventKind,
    Plan,
    PlanKind,
    ReplacementResult,
    ReplacementState,
    ReplacementTracker,
)
from mlsyskit.training.trainmover.ring import SocketRing
from mlsyskit.training.trainmover.strategies import (
    CheckpointRestart,
    LiveMigration,
    ReplacementStrategy,
    SaveRestart,
    TorchrunRestart,
)
from mlsyskit.training.trainmover.task import MLPTask, TrainTask

__all__ = [
    "CheckpointRestart",
    "Controller",
    "EventKind",
    "JobConfig",
    "JobTimeoutError",
    "LiveMigration",
    "MLPTask",
    "Plan",
    "PlanKind",
    "ReplacementFailed",
    "ReplacementResult",
    "ReplacementState",
    "ReplacementStrategy",
    "ReplacementTracker",
    "SaveRestart",
    "SocketRing",
    "TorchrunRestart",
    "TrainMoverError",
    "TrainMoverJob",
    "TrainTask",
]
