"""The replacement protocol: its states, its plans and its result.

Lifecycle of one replacement (:class:`ReplacementState`)::

    REQUESTED ──► PREPARING ──► READY ──► SWITCHING ──► DONE
        │             │           │            │
        └─────────────┴───────────┴──► ABORTED (joiner lost before the switch: the job keeps
                                       │        training on the old generation, nothing changed)
                                       └──► FAILED (a member died: a RECOVER replacement follows)

* REQUESTED: the controller chose a leaver and a joiner and published a :class:`Plan`.
* PREPARING (phase 1, off the critical path): the joiner is warm (sandbox done) and every member
  of the next generation builds its groups in a background thread while training continues.
* READY: every member reports, through the per-iteration control all-reduce, that it holds the
  next generation; the decision is the same on all ranks because it comes from one all-reduce.
* SWITCHING (phase 2, the only downtime): at that iteration boundary the leaver sends its state
  1:1 to the joiner (or a data-parallel replica does, after a crash) and stayers swap the group.
* DONE: the stayers' next iteration completed on the new generation.

A RECOVER replacement (after a crash) starts at SWITCHING: its joiner is a standby that was kept
warm ahead of time, and there is nothing left to overlap.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum

from mlsyskit.training.trainmover.errors import TrainMoverError


class PlanKind(StrEnum):
    """What a plan asks the members to do."""

    MIGRATE = "migrate"  # planned move: leaver -> joiner, state from the leaver
    RECOVER = "recover"  # after a crash: dead -> standby, state from a replica
    SAVE_EXIT = "save_exit"  # baseline: save a checkpoint at the boundary and exit


class EventKind(StrEnum):
    """Why a replacement happens."""

    PLANNED = "planned"
    STRAGGLER = "straggler"
    FAILURE = "failure"


class ReplacementState(StrEnum):
    """States of one replacement (see the module docstring for the lifecycle)."""

    REQUESTED = "requested"
    PREPARING = "preparing"
    READY = "ready"
    SWITCHING = "switching"
    DONE = "done"
    ABORTED = "aborted"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in (ReplacementState.DONE, ReplacementState.ABORTED, ReplacementState.FAILED)


_ALLOWED: dict[ReplacementState, frozenset[ReplacementState]] = {
    ReplacementState.REQUESTED: frozenset(
        {ReplacementState.PREPARING, ReplacementState.SWITCHING, ReplacementState.ABORTED,
         ReplacementState.FAILED}
    ),
    ReplacementState.PREPARING: frozenset(
        {ReplacementState.READY, ReplacementState.ABORTED, ReplacementState.FAILED}
    ),
    ReplacementState.READY: frozenset(
        {ReplacementState.SWITCHING, ReplacementState.ABORTED, ReplacementState.FAILED}
    ),
    ReplacementState.SWITCHING: frozenset({ReplacementState.DONE, ReplacementState.FAILED}),
    ReplacementState.DONE: frozenset(),
    ReplacementState.ABORTED: frozenset(),
    ReplacementState.FAILED: frozenset(),
}


class ReplacementTracker:
    """The controller's view of one replacement: legal transitions only, with timestamps."""

    def __init__(self, seq: int, clock: Callable[[], float] = time.time) -> None:
        self.seq = seq
        self._now = clock
        self.state = ReplacementState.REQUESTED
        self.history: list[tuple[ReplacementState, float]] = [(self.state, self._now())]

    def advance(self, new: ReplacementState) -> None:
        """Move to ``new``.

        Raises
        ------
        TrainMoverError
            The transition is not in the lifecycle (e.g. DONE after ABORTED).
        """
        if new not in _ALLOWED[self.state]:
            raise TrainMoverError(
                f"replacement {self.seq}: illegal transition {self.state.value} -> {new.value}"
            )
        self.state = new
        self.history.append((new, self._now()))

    def entered(self, state: ReplacementState) -> float | None:
        """When the replacement entered ``state`` (None if it never did)."""
        return next((t for s, t in self.history if s is state), None)


@dataclass(frozen=True)
class Plan:
    """A membership change, published under ``plan/<seq>`` in the store.

    ``members`` maps each new rank to a process id; ``leaver``/``joiner`` are process ids.
    """

    seq: int
    kind: PlanKind
    members: tuple[str, ...]
    leaver: str | None = None
    joiner: str | None = None
    rank: int = -1
    two_phase: bool = True
    recycle_leaver: bool = False  # the leaver becomes a (warm) standby instead of exiting

    @property
    def prefix(self) -> str:
        """Store prefix of the new generation's groups."""
        return f"p{self.seq}"

    def to_json(self) -> str:
        payload = asdict(self)
        payload["kind"] = self.kind.value
        return json.dumps(payload)

    @classmethod
    def from_json(cls, text: str | bytes) -> Plan:
        payload = json.loads(text)
        payload["kind"] = PlanKind(payload["kind"])
        payload["members"] = tuple(payload["members"])
        return cls(**payload)


@dataclass(frozen=True)
class ReplacementResult:
    """What one replacement cost, measured on the stayers' step timeline.

    Parameters
    ----------
    strategy
        Name of the :class:`ReplacementStrategy` that ran it.
    event
        Why it ran.
    rank
        The rank that was replaced.
    downtime_s
        Wall time during which no step progressed on the stayers, lost work included, minus one
        normal iteration: ``T(i*+1) - T(i*) - median_step``, where ``i*`` is the last iteration
        completed before the event and ``T(i)`` is when every rank had first completed ``i``.
    breakdown_s
        The part of the stall spent in each component (process start + init, communicator
        setup, state transfer or checkpoint load, lost work, other), measured on the processes
        that did the work and clipped to the stall window.
    switch_iteration
        ``i*``.
    lost_iterations
        Iterations that had to be computed again (restart from an older checkpoint).
    attempts
        Joiners tried (more than 1 when a joiner failed and the replacement fell back).
    state
        Final :class:`ReplacementState`.
    median_step_s, jitter_s
        Median and median absolute deviation of normal step times around the event: a downtime
        below ``jitter_s`` is within measurement noise.
    """

    strategy: str
    event: EventKind
    rank: int
    downtime_s: float
    breakdown_s: Mapping[str, float] = field(default_factory=dict)
    switch_iteration: int = -1
    lost_iterations: int = 0
    attempts: int = 1
    state: ReplacementState = ReplacementState.DONE
    median_step_s: float = 0.0
    jitter_s: float = 0.0
