"""Replacement strategies: TrainMover and the baselines, behind one interface.

Each strategy answers two events, a planned move of a rank and the crash of a rank, using only
the controller's primitives; one benchmark drives them all through the same job and measures
them with the same formula (:mod:`~mlsyskit.training.trainmover.timeline`).

=====================  ==========================================================================
strategy               what happens on the critical path
=====================  ==========================================================================
``trainmover``         nothing but the phase-2 swap and the 1:1 state transfer (warm standby,
                       groups prepared in the background)
``two-phase``          a cold joiner boots and builds groups in the background; its model and
                       optimizer init and first iteration stall the job
``naive``              stop at the boundary; spawn a cold joiner; build groups; transfer state
``save-restart``       save at the boundary; kill all; relaunch all; reload the checkpoint
``checkpoint-restart`` kill all; relaunch all; reload the last periodic checkpoint (lost work)
=====================  ==========================================================================
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

from mlsyskit.training.trainmover import keys
from mlsyskit.training.trainmover.config import JobConfig
from mlsyskit.training.trainmover.controller import Controller
from mlsyskit.training.trainmover.errors import ReplacementFailed, TrainMoverError
from mlsyskit.training.trainmover.protocol import (
    EventKind,
    PlanKind,
    ReplacementResult,
    ReplacementState,
    ReplacementTracker,
)
from mlsyskit.training.trainmover.timeline import (
    completion_times,
    last_completed_before,
    median_step,
    overlap,
    stall,
    step_jitter,
)

JOIN_TIMEOUT_S = 120.0
MAX_ATTEMPTS = 3


class ReplacementStrategy(ABC):
    """How a job replaces a rank. Subclasses fill in :meth:`planned` and :meth:`failure`."""

    name: ClassVar[str]

    def job_config(self, base: JobConfig) -> JobConfig:
        """The job settings this strategy needs (standbys, warm-up, checkpoints)."""
        return base

    @abstractmethod
    def planned(self, ctl: Controller, rank: int) -> ReplacementResult:
        """Move ``rank`` off its process while the job runs (maintenance, straggler)."""

    @abstractmethod
    def failure(self, ctl: Controller, rank: int, t_event: float) -> ReplacementResult:
        """Replace ``rank`` whose process died at ``t_event``."""


def measure(
    ctl: Controller,
    *,
    strategy: str,
    event: EventKind,
    rank: int,
    i_star: int,
    intervals: Callable[[], list[tuple[str, list[float]]]],
    lost_iterations: int = 0,
    attempts: int = 1,
    settle: int = 3,
) -> ReplacementResult:
    """Wait until the job is ``settle`` iterations past the event and compute the result."""
    ctl.wait_progress(min(ctl.config.steps, i_star + 1 + settle))
    times = completion_times(ctl.steps(), ctl.config.num_workers)
    t_start, t_end, num_steps = stall(times, i_star)
    window = (t_start, t_end)
    step = median_step(times, exclude=range(i_star - 1, i_star + num_steps + 2))
    jitter = step_jitter(times, exclude=range(i_star - 1, i_star + num_steps + 2))
    downtime = t_end - t_start - num_steps * step
    breakdown: dict[str, float] = {}
    for component, interval in intervals():
        breakdown[component] = max(breakdown.get(component, 0.0), overlap(interval, window))
    if lost_iterations:
        breakdown["lost work"] = lost_iterations * step
    breakdown["other"] = max(0.0, downtime - sum(breakdown.values()))
    return ReplacementResult(
        strategy=strategy, event=event, rank=rank, downtime_s=downtime, breakdown_s=breakdown,
        switch_iteration=i_star, lost_iterations=lost_iterations, attempts=attempts,
        median_step_s=step, jitter_s=jitter,
    )


_LABELS = {
    "boot": "process start",
    "init": "model+optimizer init",
    "groups": "communicator setup",
    "transfer": "state transfer / load",
    "load": "state transfer / load",
    "save": "checkpoint save",
    "swap": "group swap",
    "detect": "failure detection",
}


def _intervals(ctl: Controller, seq: int, procs: list[str]) -> list[tuple[str, list[float]]]:
    """The timed phases of ``procs`` (pass the process on the critical path: the joiner, or
    the last restarted worker, so that phases are sequential and do not double count)."""
    out: list[tuple[str, list[float]]] = []
    for timing in ctl.timings(seq, procs).values():
        out.extend((_LABELS[k], v) for k, v in timing.items())
    for proc in procs:
        boot = ctl.boot_interval(proc)
        if boot is not None:
            out.append((_LABELS["boot"], list(boot)))
    return out


class _IntervalReader:
    """Reads a plan's timing intervals when called (after the members have written them)."""

    def __init__(self, ctl: Controller, seq: int, procs: list[str]) -> None:
        self.ctl, self.seq, self.procs = ctl, seq, procs

    def __call__(self) -> list[tuple[str, list[float]]]:
        return _intervals(self.ctl, self.seq, self.procs)


class LiveMigration(ReplacementStrategy):
    """Member replacement without a restart; the flags give the paper's breakdown steps.

    Parameters
    ----------
    two_phase
        Build the next generation's groups in the background (phase 1) and switch at a
        boundary (phase 2). Without it, groups are built after the job stops.
    sandbox
        Use a standby that is already running and warmed up (model, optimizer, shadow
        iterations on recorded collectives). Without it, a cold process is started at the event
        and initialises after promotion.
    """

    name = "trainmover"

    def __init__(
        self, two_phase: bool = True, sandbox: bool = True, recycle_leaver: bool = False
    ) -> None:
        self.two_phase = two_phase
        self.sandbox = sandbox
        self.recycle_leaver = recycle_leaver
        if not sandbox:
            self.name = "two-phase" if two_phase else "naive"  # type: ignore[misc]

    def job_config(self, base: JobConfig) -> JobConfig:
        return base if self.sandbox else base.with_(num_standby=0)

    def _joiner(self, ctl: Controller) -> str:
        if self.sandbox:
            return ctl.take_standby(warm=True)
        joiner = ctl.add_standby(warm=False)  # cold, started now, on the clock
        ctl.standbys.remove(joiner)
        return joiner

    def planned(self, ctl: Controller, rank: int) -> ReplacementResult:
        leaver = ctl.members[rank]
        for attempt in range(1, MAX_ATTEMPTS + 1):
            joiner = self._joiner(ctl)
            members = list(ctl.members)
            members[rank] = joiner
            plan = ctl.post_plan(
                PlanKind.MIGRATE, members, leaver, joiner, rank, self.two_phase,
                self.recycle_leaver,
            )
            tracker = ReplacementTracker(plan.seq)
            tracker.advance(ReplacementState.PREPARING)
            outcome = self._await_join(ctl, plan.seq, joiner, leaver)
            if outcome is ReplacementState.ABORTED:
                ctl.abort(plan)
                tracker.advance(ReplacementState.ABORTED)
                continue
            if outcome is ReplacementState.FAILED:
                ctl.abort(plan)
                tracker.advance(ReplacementState.FAILED)
                raise ReplacementFailed(
                    f"plan {plan.seq}: a member died during the move; recover with failure()"
                )
            tracker.advance(ReplacementState.READY)
            tracker.advance(ReplacementState.SWITCHING)
            i_star = int(ctl.store.get(keys.switched(plan.seq, leaver)))
            ctl.commit(members)
            if self.recycle_leaver:
                ctl.standbys.append(leaver)
            result = measure(
                ctl, strategy=self.name, event=EventKind.PLANNED, rank=rank, i_star=i_star,
                intervals=_IntervalReader(ctl, plan.seq, [joiner]), attempts=attempt,
            )
            tracker.advance(ReplacementState.DONE)
            return result
        raise ReplacementFailed(f"rank {rank}: {MAX_ATTEMPTS} joiners failed; job unchanged")

    def _await_join(
        self, ctl: Controller, seq: int, joiner: str, leaver: str
    ) -> ReplacementState:
        deadline = time.time() + JOIN_TIMEOUT_S
        while time.time() < deadline:
            if ctl.has(keys.joined(seq)):
                return ReplacementState.DONE
            if not ctl.alive(joiner):
                return ReplacementState.ABORTED
            if any(ctl.crashed(p) for p in ctl.members if p != leaver) or (
                not ctl.alive(leaver) and not ctl.has(keys.switched(seq, leaver))
            ):
                return ReplacementState.FAILED
            time.sleep(0.005)
        return ReplacementState.ABORTED

    def failure(self, ctl: Controller, rank: int, t_event: float) -> ReplacementResult:
        members = [p if ctl.alive(p) else "" for p in ctl.members]
        dead = [r for r, p in enumerate(members) if not p]
        if len(dead) != 1:
            raise ReplacementFailed(f"{len(dead)} ranks dead ({dead}); one at a time is supported")
        joiner = self._joiner(ctl)
        members[dead[0]] = joiner
        plan = ctl.post_plan(PlanKind.RECOVER, members, None, joiner, dead[0], two_phase=False)
        deadline = time.time() + JOIN_TIMEOUT_S
        while not ctl.has(keys.joined(plan.seq)):
            if time.time() > deadline or not ctl.alive(joiner):
                raise ReplacementFailed(f"plan {plan.seq}: joiner {joiner} never joined")
            time.sleep(0.005)
        ctl.commit(members)
        times = completion_times(ctl.steps(), ctl.config.num_workers)
        i_star = last_completed_before(times, t_event)
        return measure(
            ctl, strategy=self.name, event=EventKind.FAILURE, rank=rank, i_star=i_star,
            intervals=_IntervalReader(ctl, plan.seq, [joiner]),
        )


class CheckpointRestart(ReplacementStrategy):
    """Stop everything, relaunch every rank, reload the last periodic checkpoint.

    Parameters
    ----------
    every
        Checkpoint interval in iterations; the iterations since the last checkpoint are lost.
    """

    name = "checkpoint-restart"

    def __init__(self, every: int = 10) -> None:
        if every < 1:
            raise TrainMoverError(f"checkpoint interval must be >= 1; got {every}")
        self.every = every

    def job_config(self, base: JobConfig) -> JobConfig:
        return base.with_(checkpoint_every=self.every, num_standby=0)

    def _restart(self, ctl: Controller, rank: int, t_event: float, event: EventKind) -> (
        ReplacementResult
    ):
        ctl.stop_all()
        times = completion_times(ctl.steps(), ctl.config.num_workers)
        i_star = last_completed_before(times, t_event)
        members = ctl.restart_all(resume=True)
        ckpt_next = (i_star + 1) // self.every * self.every  # next iteration the checkpoint runs
        return measure(
            ctl, strategy=self.name, event=event, rank=rank, i_star=i_star,
            intervals=lambda: _startup(ctl, members),
            lost_iterations=i_star + 1 - ckpt_next,
        )

    def planned(self, ctl: Controller, rank: int) -> ReplacementResult:
        return self._restart(ctl, rank, time.time(), EventKind.PLANNED)

    def failure(self, ctl: Controller, rank: int, t_event: float) -> ReplacementResult:
        return self._restart(ctl, rank, t_event, EventKind.FAILURE)


def _startup(ctl: Controller, procs: list[str]) -> list[tuple[str, list[float]]]:
    """Boot, init, groups and load of the restarted worker that was ready last."""
    import json

    phases: dict[str, dict[str, list[float]]] = {}
    for proc in procs:
        key = f"startup/{proc}"
        deadline = time.time() + JOIN_TIMEOUT_S
        while not ctl.has(key) and time.time() < deadline:
            time.sleep(0.01)
        if ctl.has(key):
            phases[proc] = json.loads(ctl.store.get(key))
    if not phases:
        return []
    last = max(phases, key=lambda p: phases[p]["load"][1])
    boot = ctl.boot_interval(last)
    out = [(_LABELS[k], v) for k, v in phases[last].items()]
    return out + ([(_LABELS["boot"], list(boot))] if boot else [])


class SaveRestart(ReplacementStrategy):
    """Planned moves the Megatron way: save at the next boundary, stop all, relaunch, reload."""

    name = "save-restart"

    def job_config(self, base: JobConfig) -> JobConfig:
        return base.with_(num_standby=0)

    def planned(self, ctl: Controller, rank: int) -> ReplacementResult:
        old = list(ctl.members)
        plan = ctl.post_plan(PlanKind.SAVE_EXIT, old)
        ctl.wait_exit(old, timeout_s=JOIN_TIMEOUT_S)
        key = keys.switched(plan.seq, old[0])
        if not ctl.has(key):
            raise ReplacementFailed(f"plan {plan.seq}: the job exited without saving")
        i_star = int(ctl.store.get(key))
        members = ctl.restart_all(resume=True)
        return measure(
            ctl, strategy=self.name, event=EventKind.PLANNED, rank=rank, i_star=i_star,
            intervals=lambda: _intervals(ctl, plan.seq, old) + _startup(ctl, members),
        )

    def failure(self, ctl: Controller, rank: int, t_event: float) -> ReplacementResult:
        raise TrainMoverError(
            "save-and-restart cannot save after a crash; use CheckpointRestart for failures"
        )


class TorchrunRestart(ReplacementStrategy):
    """torch elastic's recovery: ``torchrun --max-restarts`` restarts every worker on a failure.

    The job is launched by one torchrun agent; the workers reload the last periodic checkpoint
    when they come back (``TORCHELASTIC_RESTART_COUNT`` > 0). Planned moves have no torchrun
    verb: they are a kill of the rank, like a failure.
    """

    name = "torchrun-restart"

    def __init__(self, every: int = 10) -> None:
        if every < 1:
            raise TrainMoverError(f"checkpoint interval must be >= 1; got {every}")
        self.every = every

    def job_config(self, base: JobConfig) -> JobConfig:
        return base.with_(checkpoint_every=self.every, num_standby=0, launcher="torchrun")

    def failure(self, ctl: Controller, rank: int, t_event: float) -> ReplacementResult:
        import json

        if ctl.config.launcher != "torchrun":
            raise TrainMoverError("TorchrunRestart needs a job launched with launcher='torchrun'")
        deadline = time.time() + JOIN_TIMEOUT_S
        for proc in ctl.members:  # wait for torchrun to bring every rank back
            key = f"startup/{proc}"
            while not (ctl.has(key) and json.loads(ctl.store.get(key))["init"][0] > t_event):
                if time.time() > deadline or not ctl.alive("agent"):
                    raise ReplacementFailed(f"torchrun did not restart {proc}")
                time.sleep(0.02)
        times = completion_times(ctl.steps(), ctl.config.num_workers)
        i_star = last_completed_before(times, t_event)
        ckpt_next = (i_star + 1) // self.every * self.every
        return measure(
            ctl, strategy=self.name, event=EventKind.FAILURE, rank=rank, i_star=i_star,
            intervals=lambda: _startup(ctl, list(ctl.members)),
            lost_iterations=i_star + 1 - ckpt_next,
        )

    def planned(self, ctl: Controller, rank: int) -> ReplacementResult:
        return self.failure(ctl, rank, ctl.kill(rank))
