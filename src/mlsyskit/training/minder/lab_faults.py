"""The live lab's faults, injected for real into one worker and cleared afterwards.

- ``slow``: the worker does 6x the compute per step (a control file it checks every step), a
  straggler such as a throttled or degraded device.
- ``pause``: SIGSTOP, a hung machine; SIGCONT clears it.
- ``hog``: CPU contention, described below.

On a real cluster a CPU hog (a runaway data loader, a monitoring agent gone wild, another
tenant) competes with the training process *on the faulty machine only*; its peers on other
machines are untouched. The lab's "machines" are processes on one small host, so the fault is
modelled with CPU affinity (Linux ``sched_setaffinity``):

- the victim worker (every thread of it) is pinned to one core, the *hog core*;
- ``num_hogs`` pure busy-loop Python processes are pinned to the same core;
- every peer worker is pinned to the *other* cores, so the hogs cannot reach them, as on a
  cluster where they sit on other machines.

What this does, measured here: a lab worker computes for a millisecond or two per step and
sleeps or waits the rest, so it uses far less than a fair share of the hog core and the kernel
(EEVDF) still gives it all the CPU time it asks for. The damage is *latency*: after every wakeup
(end of the data-loading sleep, all-reduce done) the worker waits in the run queue behind the
hogs, and the wait grows with their number (a 20 ms-period toy loop pinned with 3 hogs spent
about 17% of its wall time runnable but waiting, with 8 hogs about 32%, alone 2-3%). The victim
reaches every all-reduce late, so the whole synchronous job slows (step time +30% with 3 hogs,
+140% with 16), its peers wait longer in the all-reduce, and the victim's own run-queue wait
(the worker's ``lab_cpu_wait_fraction``) rises above its peers'. Several hogs model heavy
contention; they cost no more CPU than one (the hog core is saturated either way).

Pinning starts at the injection, not before: pinned during the normal phase, the victim would
own a core while its peers shared the rest, and it would look unlike its peers before any fault.

Every injector is a context manager: the fault is cleared (hogs stopped and the workers'
original affinity restored, SIGCONT, control file removed) on every exit path, including an
exception or KeyboardInterrupt. A platform without CPU affinity, or a host with a single usable
core, is an error for ``hog``, never a silent fallback to a fault that is not injected.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from mlsyskit.training.minder.errors import MinderError

# A pure busy loop (no I/O, no memory, just CPU) that pins itself to its core (argv[2]) before
# it starts spinning, so it never competes with the peers, and ends by itself once the process
# that started it (pid in argv[1]) is gone, a backstop for a lab killed with SIGKILL.
HOG_CODE = ("import os, sys\nos.sched_setaffinity(0, {int(sys.argv[2])})\n"
            "parent = int(sys.argv[1])\nwhile os.getppid() == parent:\n    pass\n")
SLOW_FACTOR = 6  # compute repeats of a 'slow' worker (see lab_worker)


class LabFault(StrEnum):
    """The faults the lab can inject (see the module docstring)."""

    slow = "slow"
    pause = "pause"
    hog = "hog"


@dataclass(frozen=True)
class HogPlacement:
    """Where the fault put everything: the hog core and the cores left to the peers."""

    hog_core: int
    peer_cores: frozenset[int]
    hog_pids: tuple[int, ...]


def usable_cores() -> frozenset[int]:
    """The cores this process may run on; raises when CPU affinity is unsupported.

    Raises
    ------
    MinderError
        Not Linux-style affinity (``os.sched_setaffinity`` or ``/proc/<pid>/task`` missing), or
        fewer than 2 usable cores (the peers need a core the hogs do not reach).
    """
    if not hasattr(os, "sched_setaffinity") or not hasattr(os, "sched_getaffinity") \
            or not Path("/proc/self/task").is_dir():
        raise MinderError(
            "the 'hog' fault needs Linux CPU affinity (os.sched_setaffinity and /proc/<pid>/task)"
            f"; this platform ({sys.platform}) has none: use --fault slow or --fault pause")
    cores = frozenset(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise MinderError(
            f"the 'hog' fault needs at least 2 usable cores (one for the victim and its hogs, "
            f"the rest for its peers); this process may use {sorted(cores)}")
    return cores


def thread_ids(pid: int) -> list[int]:
    """Every thread of ``pid`` (affinity is per thread on Linux; torch and gloo start threads)."""
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None


def pin_process(pid: int, cores: frozenset[int]) -> None:
    """Pin every current thread of ``pid`` (new threads inherit the creator's affinity)."""
    for tid in thread_ids(pid):
        try:
            os.sched_setaffinity(tid, cores)
        except ProcessLookupError:
            continue  # the thread ended between the listing and now


def _stop_hog(proc: subprocess.Popen[bytes], timeout_s: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    proc.kill()  # a busy loop holds nothing worth a graceful shutdown
    proc.wait(timeout=timeout_s)


@contextmanager
def cpu_hog(victim_pid: int, peer_pids: Sequence[int], num_hogs: int,
            hog_core: int | None = None) -> Iterator[HogPlacement]:
    """Inject CPU contention on ``victim_pid`` for the duration of the ``with`` block.

    Parameters
    ----------
    victim_pid
        The process that gets the hogs beside it.
    peer_pids
        Processes kept off the hog core (the victim's peers).
    num_hogs
        Busy-loop processes on the hog core (>= 1).
    hog_core
        The core to contend on; default the lowest usable core.

    Yields
    ------
    HogPlacement
        The hog core, the peers' cores and the hogs' process ids.

    Raises
    ------
    MinderError
        See :func:`usable_cores`; also ``num_hogs < 1`` or a ``hog_core`` not usable.
    """
    if num_hogs < 1:
        raise MinderError(f"num_hogs must be >= 1; got {num_hogs}")
    cores = usable_cores()
    core = min(cores) if hog_core is None else hog_core
    if core not in cores:
        raise MinderError(f"hog core {core} is not usable here; usable cores {sorted(cores)}")
    peer_cores = cores - {core}
    original = {pid: frozenset(os.sched_getaffinity(pid)) for pid in (victim_pid, *peer_pids)}
    hogs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(num_hogs):
            proc = subprocess.Popen(  # stopped in the finally below
                [sys.executable, "-c", HOG_CODE, str(os.getpid()), str(core)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            hogs.append(proc)
            os.sched_setaffinity(proc.pid, {core})
        pin_process(victim_pid, frozenset({core}))
        for pid in peer_pids:
            pin_process(pid, peer_cores)
        yield HogPlacement(core, peer_cores, tuple(p.pid for p in hogs))
    finally:
        errors = []
        for proc in hogs:
            try:
                _stop_hog(proc)
            except (OSError, subprocess.TimeoutExpired) as exc:  # keep stopping the others
                errors.append(f"hog {proc.pid}: {exc}")
        for pid, cores_before in original.items():
            try:
                pin_process(pid, cores_before)
            except ProcessLookupError:  # a worker that has ended has nothing left to restore
                pass
            except OSError as exc:  # keep restoring the others
                errors.append(f"affinity of {pid}: {exc}")
        if errors and sys.exc_info()[0] is None:  # never mask the body's own exception
            raise MinderError("could not undo every part of the CPU-hog fault: "
                              + "; ".join(errors))


@contextmanager
def inject(fault: LabFault, victim: subprocess.Popen[bytes], peers: Sequence[
        subprocess.Popen[bytes]], control_dir: Path, victim_rank: int,
           num_hogs: int) -> Iterator[str]:
    """Inject ``fault`` on ``victim`` for the ``with`` block; yields a one-line description."""
    if fault is LabFault.slow:
        flag = control_dir / f"slow-{victim_rank}"
        flag.touch()
        try:
            yield f"{SLOW_FACTOR}x compute per step"
        finally:
            flag.unlink(missing_ok=True)
    elif fault is LabFault.pause:
        victim.send_signal(signal.SIGSTOP)
        try:
            yield "SIGSTOP"
        finally:
            if victim.poll() is None:
                victim.send_signal(signal.SIGCONT)
    else:
        with cpu_hog(victim.pid, [p.pid for p in peers], num_hogs) as placement:
            yield (f"{num_hogs} busy-loop process(es) pinned with the worker to core "
                   f"{placement.hog_core}, its peers on core(s) {sorted(placement.peer_cores)}")
