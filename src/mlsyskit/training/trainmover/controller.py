"""The controller: the coordination store, the membership, the generation and the processes.

In torch-elastic terms it is the rendezvous (who is in the group: ``members``, one process id per
rank, published in the store) and the agent (start, monitor, stop, restart processes) in one
object. It holds torch's ``TCPStore`` as master; every member is a client. What to do on an event
is not decided here: a :class:`~mlsyskit.training.trainmover.strategies.ReplacementStrategy`
drives the controller's primitives (post a plan, spawn, stop all, restart all).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mlsyskit.training.trainmover import keys
from mlsyskit.training.trainmover.config import JobConfig
from mlsyskit.training.trainmover.errors import JobTimeoutError, TrainMoverError
from mlsyskit.training.trainmover.protocol import Plan, PlanKind
from mlsyskit.training.trainmover.timeline import StepRecord, read_steps

if TYPE_CHECKING:
    import torch.distributed as dist

HEARTBEAT_TIMEOUT_S = 15.0


def _zombie(pid: int) -> bool:
    """Whether ``pid`` has exited but not been reaped (state Z in /proc)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


class Controller:
    """Owns one job: its store, its member processes and its standbys.

    Parameters
    ----------
    config
        The job.
    run_dir
        Where members write step logs, recordings, checkpoints and their stdout/stderr.
    port
        Store port; 0 picks a free one.

    Use as a context manager: leaving it stops every process it started.
    """

    def __init__(self, config: JobConfig, run_dir: Path, port: int = 0) -> None:
        self.config = config
        self.run_dir = run_dir
        self.requested_port = port
        self.members: list[str] = []
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.spawned_at: dict[str, float] = {}
        self.standbys: list[str] = []
        self.generation = 0
        self.restarts = 0
        self._seq = 0
        self._counter = {"w": 0, "s": 0}
        self._store: dist.TCPStore | None = None

    # ---- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> Controller:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    @property
    def store(self) -> dist.TCPStore:
        if self._store is None:
            raise TrainMoverError("controller not started: call start() or use it in a with")
        return self._store

    @property
    def port(self) -> int:
        return int(self.store.port)

    def start(self) -> None:
        """Start the store, the workers (generation 0) and the standbys."""
        import torch.distributed as dist

        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._store = dist.TCPStore(
            "127.0.0.1", self.requested_port, None, True,
            timeout=datetime.timedelta(seconds=60), wait_for_workers=False,
        )
        self.config.save(self.run_dir / "config.json")
        (self.run_dir / "controller.json").write_text(
            json.dumps({"port": self.port, "pid": os.getpid()}), encoding="utf-8"
        )
        self.store.add(keys.PLAN_SEQ, 0)
        if self.config.launcher == "torchrun":
            self._start_torchrun()
        else:
            self.members = [self.spawn("w", rank=r) for r in range(self.config.num_workers)]
        self._publish()
        for _ in range(self.config.num_standby):
            self.add_standby()

    def shutdown(self) -> None:
        """Stop every process this controller started (and the workers of a torchrun agent)."""
        for proc in self.procs.values():
            if proc.poll() is None:  # the whole session, so a torchrun agent cannot restart
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        for member in self.members:  # torchrun workers live in sessions of their own
            if member not in self.procs and self._store is not None:
                with contextlib.suppress(Exception):  # a worker that never registered a pid
                    if self.has(keys.pid(member)):
                        os.kill(self.member_pid(member), signal.SIGKILL)
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):  # a zombie we cannot reap
                proc.wait(timeout=10)
        (self.run_dir / "controller.json").unlink(missing_ok=True)  # no job answers here now
        self._store = None

    def spawn(
        self, kind: str, rank: int = -1, prefix: str = "g0", resume: bool = False,
        cold: bool = False,
    ) -> str:
        """Start one member process; returns its process id (``w3``, ``s1``...)."""
        proc_id = f"{kind}{self._counter[kind]}"
        self._counter[kind] += 1
        logs = self.run_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "mlsyskit.training.trainmover.worker",
            "--proc", proc_id, "--config", str(self.run_dir / "config.json"),
            "--run-dir", str(self.run_dir), "--store-port", str(self.port),
            "--rank", str(rank), "--prefix", prefix,
        ] + (["--resume"] if resume else []) + (["--cold"] if cold else [])
        env = dict(os.environ)
        now = time.time()
        env.update(
            GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
            TRAINMOVER_SPAWN_T=repr(now),
        )
        with (logs / f"{proc_id}.log").open("ab") as out:
            self.procs[proc_id] = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.spawned_at[proc_id] = now
        pids = self.run_dir / "pids"
        pids.mkdir(exist_ok=True)
        (pids / proc_id).write_text(str(self.procs[proc_id].pid), encoding="ascii")
        return proc_id

    def _start_torchrun(self) -> None:
        """One torch-elastic agent owns the workers (``t<rank>``) and restarts them all."""
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc-per-node", str(self.config.num_workers), "--max-restarts", "5",
            "--monitor-interval", "0.1", "-m", "mlsyskit.training.trainmover.worker",
            "--torchrun", "--proc", "agent", "--config", str(self.run_dir / "config.json"),
            "--run-dir", str(self.run_dir), "--store-port", str(self.port),
        ]
        env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1",
                   TRAINMOVER_SPAWN_T=repr(time.time()))
        logs = self.run_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with (logs / "torchrun.log").open("ab") as out:
            self.procs["agent"] = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.members = [f"t{r}" for r in range(self.config.num_workers)]

    def member_pid(self, proc: str) -> int:
        """The OS pid of a member (as the member registered it in the store)."""
        return int(self.store.get(keys.pid(proc)))

    def add_standby(self, warm: bool = True) -> str:
        """Start a standby process; it runs the sandbox warm-up if ``warm`` and the job allows."""
        proc = self.spawn("s", cold=not (warm and self.config.warm_standby))
        self.standbys.append(proc)
        return proc

    def _publish(self) -> None:
        self.store.set(
            keys.MEMBERS, json.dumps({"members": self.members, "generation": self.generation})
        )

    # ---- monitoring ----------------------------------------------------------------------
    def alive(self, proc: str) -> bool:
        if proc in self.procs:
            return self.procs[proc].poll() is None
        try:  # a torchrun worker: not our child, ask the OS
            os.kill(self.member_pid(proc), 0)
        except ProcessLookupError:
            return False
        return Path(f"/proc/{self.member_pid(proc)}").exists() and not _zombie(
            self.member_pid(proc)
        )

    def crashed(self, proc: str) -> bool:
        """Whether ``proc`` is gone without having finished the job."""
        return not self.alive(proc) and not self.has(keys.done(proc))

    def has(self, key: str) -> bool:
        return bool(self.store.check([key]))

    def progress(self) -> int:
        """Iterations every current member has completed."""
        values = []
        for proc in self.members:
            key = keys.progress(proc)
            values.append(int(self.store.get(key)) if self.has(key) else 0)
        return min(values) if values else 0

    def wait_progress(self, iteration: int, timeout_s: float = 120.0) -> None:
        """Block until every member has completed ``iteration`` iterations.

        Raises
        ------
        JobTimeoutError
            Not reached in time; the message names dead members, if any.
        """
        deadline = time.time() + timeout_s
        while self.progress() < iteration:
            dead = [p for p in self.members if not self.alive(p) and not self.has(keys.done(p))]
            if time.time() > deadline or (dead and not self._all_done()):
                raise JobTimeoutError(
                    f"job did not reach iteration {iteration} (at {self.progress()}); "
                    f"dead members: {dead or 'none'}; logs in {self.run_dir / 'logs'}"
                )
            time.sleep(0.02)

    def _all_done(self) -> bool:
        return all(self.has(keys.done(p)) for p in self.members)

    def wait_finished(self, timeout_s: float = 300.0) -> None:
        """Block until every member finished the last iteration and exited."""
        deadline = time.time() + timeout_s
        while not self._all_done():
            if time.time() > deadline:
                raise JobTimeoutError(f"job not finished in {timeout_s:.0f} s")
            time.sleep(0.05)

    def poll_failure(self) -> tuple[int, float] | None:
        """One look: a member that exited unfinished or stopped heartbeating, as (rank, now)."""
        now = time.time()
        for rank, proc in enumerate(self.members):
            if self.has(keys.done(proc)):
                continue
            if not self.alive(proc):
                return rank, now
            hb = keys.heartbeat(proc)
            if self.has(hb) and now - float(self.store.get(hb)) > HEARTBEAT_TIMEOUT_S:
                self.procs[proc].kill()  # hung: make it a clean crash
                self.procs[proc].wait(timeout=10)
                return rank, now
        return None

    def detect_failure(self, timeout_s: float = 60.0) -> tuple[int, float]:
        """Wait until a member dies (exit) or stops heartbeating; returns (rank, detect time)."""
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            found = self.poll_failure()
            if found is not None:
                return found
            time.sleep(0.005)
        raise JobTimeoutError(f"no failure detected within {timeout_s:.0f} s")

    # ---- actions -------------------------------------------------------------------------
    def post_plan(
        self,
        kind: PlanKind,
        members: list[str],
        leaver: str | None = None,
        joiner: str | None = None,
        rank: int = -1,
        two_phase: bool = True,
        recycle_leaver: bool = False,
    ) -> Plan:
        """Publish a plan: the plan first, then the sequence number members poll."""
        self._seq += 1
        plan = Plan(
            self._seq, kind, tuple(members), leaver, joiner, rank, two_phase, recycle_leaver
        )
        self.store.set(keys.plan(plan.seq), plan.to_json())
        self.store.add(keys.PLAN_SEQ, 1)
        return plan

    def abort(self, plan: Plan) -> None:
        self.store.set(keys.abort(plan.seq), "1")

    def commit(self, members: list[str]) -> None:
        """Record a new membership (a new generation)."""
        self.members = list(members)
        self.generation += 1
        self._publish()

    def take_standby(self, warm: bool, timeout_s: float = 120.0) -> str:
        """A free standby (warm-up finished if ``warm``), removed from the pool.

        Raises
        ------
        JobTimeoutError
            None became free in time.
        """
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            for proc in list(self.standbys):
                if not self.alive(proc):
                    self.standbys.remove(proc)
                    continue
                ready = self.has(keys.standby_free(proc))
                if ready and (not warm or self.has(keys.standby_warm(proc))):
                    self.standbys.remove(proc)
                    return proc
            time.sleep(0.01)
        raise JobTimeoutError(f"no {'warm ' if warm else ''}standby free within {timeout_s} s")

    def wait_standbys(self, timeout_s: float = 120.0) -> None:
        """Block until every standby is up (and warmed up, if the job asks for warm ones)."""
        deadline = time.time() + timeout_s
        for proc in self.standbys:
            key = keys.standby_warm(proc) if self.config.warm_standby else keys.standby_free(proc)
            while not self.has(key):
                if time.time() > deadline or not self.alive(proc):
                    raise JobTimeoutError(f"standby {proc} not ready; see {self.run_dir}/logs")
                time.sleep(0.02)

    def kill(self, rank: int) -> float:
        """SIGKILL the process holding ``rank`` (fault injection); returns the kill time."""
        proc = self.members[rank]
        now = time.time()
        if proc not in self.procs:  # a torchrun worker
            os.kill(self.member_pid(proc), signal.SIGKILL)
            return now
        os.kill(self.procs[proc].pid, signal.SIGKILL)
        self.procs[proc].wait(timeout=10)
        return now

    def stop_all(self) -> None:
        """Kill every member (the restart baselines' "stop" step)."""
        for proc in self.members:
            if self.alive(proc):
                self.procs[proc].kill()
        for proc in self.members:
            self.procs[proc].wait(timeout=10)

    def wait_exit(self, procs: list[str], timeout_s: float = 60.0) -> None:
        deadline = time.time() + timeout_s
        for proc in procs:
            try:
                self.procs[proc].wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired as exc:
                raise JobTimeoutError(f"{proc} did not exit in {timeout_s:.0f} s") from exc

    def restart_all(self, resume: bool) -> list[str]:
        """Relaunch every rank as a fresh process on a fresh store prefix, from the checkpoint."""
        self.restarts += 1
        prefix = f"r{self.restarts}"
        members = [
            self.spawn("w", rank=r, prefix=prefix, resume=resume)
            for r in range(self.config.num_workers)
        ]
        self.commit(members)
        return members

    def inject_joiner_fault(self, proc: str, crash: bool = False, delay_s: float = 0.0) -> None:
        """Make standby ``proc`` crash (or stall ``delay_s``) when it is promoted."""
        self.store.set(keys.inject(proc), json.dumps({"crash": crash, "delay_s": delay_s}))

    def set_slowdown(self, rank: int, extra_s: float) -> None:
        """Make a rank a straggler: it computes ``extra_s`` longer each iteration."""
        self.store.set(keys.slow(self.members[rank]), repr(extra_s))

    # ---- reading back --------------------------------------------------------------------
    def steps(self) -> list[StepRecord]:
        return read_steps(self.run_dir)

    def timings(self, seq: int, procs: list[str]) -> dict[str, dict[str, list[float]]]:
        out = {}
        for proc in procs:
            key = keys.timing(seq, proc)
            if self.has(key):
                out[proc] = json.loads(self.store.get(key))
        return out

    def boot_interval(self, proc: str) -> tuple[float, float] | None:
        key = f"boot/{proc}"
        if not self.has(key):
            return None
        t0, t1 = json.loads(self.store.get(key))
        return float(t0), float(t1)

    def status(self) -> dict[str, object]:
        """Membership, generation, progress and standbys, for ``trainmover status``."""
        return {
            "generation": self.generation,
            "members": list(self.members),
            "progress": self.progress(),
            "standbys": list(self.standbys),
            "restarts": self.restarts,
        }
