from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlsyskit.training.minder.errors import MinderError
from mlsyskit.training.minder.lab_faults import HOG_CODE, LabFault, cpu_hog, inject, thread_ids
from mlsyskit.training.minder.lab_worker import check_schedstat

needs_two_cores = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux CPU affinity and at least 2 usable cores")

# a stand-in worker with a second thread: affinity must reach every thread, not just the leader
SLEEPER = "import threading, time\nthreading.Thread(target=time.sleep, args=(60,)).start()\n" \
          "time.sleep(60)\n"


def _threads_started(proc: subprocess.Popen[bytes]) -> None:
    import time

    deadline = time.monotonic() + 20
    while len(thread_ids(proc.pid)) < 2:
        assert time.monotonic() < deadline, "the stand-in worker never started its thread"
        time.sleep(0.05)


@pytest.fixture()
def workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [subprocess.Popen([sys.executable, "-c", SLEEPER]) for _ in range(3)]
    try:
        for p in procs:
            _threads_started(p)
        yield procs
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=10)


def _affinities(pid: int) -> set[frozenset[int]]:
    return {frozenset(os.sched_getaffinity(t)) for t in thread_ids(pid)}


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@needs_two_cores
def test_hogs_share_the_victims_core_and_are_stopped(
        workers: list[subprocess.Popen[bytes]]) -> None:
    victim, *peers = workers
    before = frozenset(os.sched_getaffinity(0))
    with cpu_hog(victim.pid, [p.pid for p in peers], num_hogs=2) as placement:
        core = min(before)
        assert placement.hog_core == core
        assert placement.peer_cores == before - {core}
        assert len(placement.hog_pids) == 2
        for pid in placement.hog_pids:
            assert os.sched_getaffinity(pid) == {core}
        assert _affinities(victim.pid) == {frozenset({core})}  # every thread
        for p in peers:
            assert _affinities(p.pid) == {before - {core}}
    for pid in placement.hog_pids:
        assert _gone(pid)  # killed and reaped
    for w in workers:
        assert _affinities(w.pid) == {before}  # restored


@needs_two_cores
@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_hogs_are_stopped_when_the_body_raises(
        workers: list[subprocess.Popen[bytes]], error: BaseException) -> None:
    victim, *peers = workers
    before = frozenset(os.sched_getaffinity(0))
    hog_pids: tuple[int, ...] = ()
    with pytest.raises(type(error)), cpu_hog(victim.pid, [p.pid for p in peers], 3) as placement:
        hog_pids = placement.hog_pids
        raise error
    assert len(hog_pids) == 3 and all(_gone(pid) for pid in hog_pids)
    assert _affinities(victim.pid) == {before}


@needs_two_cores
def test_a_worker_that_died_meanwhile_is_no_error(
        workers: list[subprocess.Popen[bytes]]) -> None:
    victim, *peers = workers
    with cpu_hog(victim.pid, [p.pid for p in peers], 1) as placement:
        victim.kill()
        victim.wait(timeout=10)
    assert _gone(placement.hog_pids[0])


def test_hog_without_cpu_affinity_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "sched_setaffinity", raising=False)
    with pytest.raises(MinderError, match="needs Linux CPU affinity"), cpu_hog(1, [], 1):
        pass


def test_hog_on_one_core_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no CPU affinity here")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    with pytest.raises(MinderError, match="at least 2 usable cores"), cpu_hog(1, [], 1):
        pass


def test_hog_arguments_are_validated() -> None:
    with pytest.raises(MinderError, match="num_hogs"), cpu_hog(1, [], 0):
        pass
    if hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) >= 2:
        with pytest.raises(MinderError, match="hog core 4096"), cpu_hog(1, [], 1, hog_core=4096):
            pass


def test_slow_and_pause_are_cleared_on_exit(tmp_path: Path,
                                             workers: list[subprocess.Popen[bytes]]) -> None:
    victim, *peers = workers
    with inject(LabFault.slow, victim, peers, tmp_path, 2, num_hogs=1) as how:
        assert (tmp_path / "slow-2").exists() and "6x" in how
    assert not (tmp_path / "slow-2").exists()
    with pytest.raises(RuntimeError), inject(LabFault.pause, victim, peers, tmp_path, 0, 1):
        assert _state(victim.pid, "T") == "T"  # stopped
        raise RuntimeError("boom")
    assert _state(victim.pid, "S") == "S"  # continued: sleeping again


def _state(pid: int, want: str) -> str:
    """The process state letter, polled until it is ``want`` (signals are asynchronous)."""
    import time

    stat = ""
    for _ in range(250):
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if stat == want:
            break
        time.sleep(0.02)
    return stat


@needs_two_cores
def test_hogs_end_by_themselves_when_the_lab_is_killed() -> None:
    import time

    # a "lab" that starts hogs and dies without running any cleanup (os._exit)
    lab = ("import os, sys\nfrom mlsyskit.training.minder.lab_faults import cpu_hog\n"
           "with cpu_hog(os.getpid(), [], 2) as p:\n"
           "    print(*p.hog_pids, flush=True)\n    os._exit(0)\n")
    out = subprocess.run([sys.executable, "-c", lab], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    pids = [int(x) for x in out.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 20
    while not all(_gone(pid) or _zombie(pid) for pid in pids):
        assert time.monotonic() < deadline, "orphaned hogs kept spinning"
        time.sleep(0.05)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@needs_two_cores
def test_a_failed_restore_does_not_stop_the_others(
        workers: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch) -> None:
    from mlsyskit.training.minder import lab_faults

    victim, *peers = workers
    before = _affinities(peers[1].pid)
    real_pin = lab_faults.pin_process
    restoring = {"on": False}

    def pin(pid: int, cores: frozenset[int]) -> None:
        if restoring["on"] and pid == victim.pid:
            raise PermissionError("EPERM")
        real_pin(pid, cores)

    monkeypatch.setattr(lab_faults, "pin_process", pin)
    with (pytest.raises(MinderError, match=f"affinity of {victim.pid}"),
          cpu_hog(victim.pid, [p.pid for p in peers], num_hogs=1) as placement):
        restoring["on"] = True
    assert _affinities(peers[1].pid) == before  # restored after the victim's failure
    assert all(_gone(pid) for pid in placement.hog_pids)


@needs_two_cores
def test_a_hog_pins_itself_before_it_spins() -> None:
    """Started without the lab's own pinning, a hog still ends up on its core alone."""
    import time

    core = max(os.sched_getaffinity(0))
    proc = subprocess.Popen([sys.executable, "-c", HOG_CODE, str(os.getpid()), str(core)])
    try:
        deadline = time.monotonic() + 20
        while os.sched_getaffinity(proc.pid) != {core}:
            assert proc.poll() is None, "the hog exited"
            assert time.monotonic() < deadline, "the hog never pinned itself"
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.mark.parametrize(("text", "problem"), [
    (None, "missing"),
    ("abc", "malformed"),
    ("0 0 0\n", "0 ns of run time"),
])
def test_lab_worker_refuses_a_kernel_without_run_queue_accounting(
    tmp_path: Path, text: str | None, problem: str,
) -> None:
    path = tmp_path / "schedstat"
    if text is not None:
        path.write_text(text)
    with pytest.raises(SystemExit, match=problem):
        check_schedstat(path)


def test_lab_worker_accepts_a_schedstat_with_run_time(tmp_path: Path) -> None:
    path = tmp_path / "schedstat"
    path.write_text("123456 789 10\n")
    check_schedstat(path)  # no exception
    if Path("/proc/self/schedstat").exists():
        check_schedstat()
