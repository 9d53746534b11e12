"""A member process of the job: a training rank, or a standby that can become one.

Run as ``python -m mlsyskit.training.trainmover.worker``; the controller starts it. One class,
:class:`Member`, covers both roles because a standby *becomes* a rank when promoted: it keeps
its process, its imported torch and its warmed-up stage runtimes.

Per iteration a rank (1) heartbeats and reads new plans from the store, (2) runs the step,
(3) all-reduces a 4-number control vector (MAX) at the iteration boundary; the reduced vector
tells every rank the same thing: whether all members hold the next generation (switch now) or
saw a save-and-exit request. A collective that fails (a peer died) drops the group at once,
which makes the peers' collectives fail too, and the rank waits for the controller's RECOVER
plan.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from mlsyskit.training.trainmover import keys
from mlsyskit.training.trainmover.comm import (
    GlooComm,
    Group,
    GroupSet,
    RecordingComm,
    ReplayComm,
    abort_sockets,
    all_reduce_max,
    broadcast,
    build_groups,
    new_gloo_group,
)
from mlsyskit.training.trainmover.config import JobConfig
from mlsyskit.training.trainmover.errors import JobTimeoutError, ReplacementFailed
from mlsyskit.training.trainmover.protocol import Plan, PlanKind
from mlsyskit.training.trainmover.runtime import (
    NUM_CTRL,
    Runtime,
    load_checkpoint,
    peak_rss_mb,
    rss_mb,
    save_checkpoint,
    train_step,
)
from mlsyskit.training.trainmover.task import load_task

if TYPE_CHECKING:
    import torch
    import torch.distributed as dist

PLAN_WAIT_S = 120.0


@dataclass
class Pending:
    """Phase 1 of a plan on one member: next-generation groups built in a background thread."""

    plan: Plan
    groups: GroupSet | None = None
    pair: Group | None = None
    error: BaseException | None = None
    finished: threading.Event = field(default_factory=threading.Event)


class Member:
    """One process of the job (see the module docstring)."""

    def __init__(self, proc: str, config: JobConfig, run_dir: Path, store_port: int) -> None:
        import torch
        import torch.distributed as dist

        torch.set_num_threads(1)
        self.proc = proc
        self.config = config
        self.run_dir = run_dir
        self.port = store_port
        self.store = self._connect()
        self.task = load_task(config.task, config)
        self.rank = -1
        self.it = 0
        self.rt: Runtime | None = None
        self.warm: dict[int, Runtime] = {}
        self.comm: GlooComm | None = None
        self.pending: Pending | None = None
        self.handled = 0
        self.save_seq = 0
        self._t_error = 0.0
        self._parked: list[GlooComm | None] = []
        self._log: IO[str] | None = None
        self._dist = dist
        self.store.set(keys.pid(proc), str(os.getpid()))

    # ---- store helpers -------------------------------------------------------------------
    def _connect(self) -> dist.TCPStore:
        import datetime

        import torch.distributed as dist

        return dist.TCPStore(
            "127.0.0.1", self.port, None, False, timeout=datetime.timedelta(seconds=60)
        )

    def _has(self, key: str) -> bool:
        return bool(self.store.check([key]))

    def _timing(self, seq: int, **intervals: tuple[float, float]) -> None:
        key = keys.timing(seq, self.proc)
        old = json.loads(self.store.get(key)) if self._has(key) else {}
        old.update({k: list(v) for k, v in intervals.items()})
        self.store.set(key, json.dumps(old))

    def _new_plans(self) -> list[Plan]:
        latest = int(self.store.add(keys.PLAN_SEQ, 0))
        plans = []
        for seq in range(self.handled + 1, latest + 1):
            plans.append(Plan.from_json(self.store.get(keys.plan(seq))))
            self.handled = seq
        return plans

    # ---- logging -------------------------------------------------------------------------
    def _log_step(self, loss: float, compute_s: float) -> None:
        if self._log is None:
            path = self.run_dir / "steps" / f"{self.proc}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            self._log = path.open("a", encoding="utf-8", buffering=1)
        record = {
            "proc": self.proc, "rank": self.rank, "it": self.it, "t": time.time(),
            "loss": None if loss != loss else loss, "compute_s": compute_s,
            "rss_mb": rss_mb(), "peak_mb": peak_rss_mb(),
        }
        self._log.write(json.dumps(record) + "\n")

    # ---- generations ---------------------------------------------------------------------
    def _drop_comm(self) -> None:
        """Abandon the current generation after a failure.

        Its sockets are shut down so that every peer still inside a collective of it fails at
        once (the crash propagates); the group object is parked, not destroyed, because gloo's
        teardown holds the interpreter lock for a few hundred milliseconds.
        """
        if self.comm is not None:
            self._t_error = time.time()
            abort_sockets(self.comm.groups.socket_fds)
            self._parked.append(self.comm)
        self.comm = None

    def _build_for(self, plan: Plan, pending: Pending) -> None:
        """Phase 1 body: build what this member needs of ``plan``'s generation."""
        try:
            t0 = time.time()
            store = self._connect()  # own client: the main thread keeps using self.store
            if self.proc in plan.members:
                rank = plan.members.index(self.proc)
                pending.groups = build_groups(
                    store, plan.prefix, rank, self.config.num_workers, self.config.pp,
                    self.config.collective_timeout_s,
                )
            if plan.kind is PlanKind.MIGRATE and self.proc in (plan.leaver, plan.joiner):
                pair_rank = 0 if self.proc == plan.leaver else 1
                pending.pair = new_gloo_group(
                    store, f"{plan.prefix}/pair", pair_rank, 2, self.config.collective_timeout_s
                )
            self._timing(plan.seq, groups=(t0, time.time()))
        except BaseException as exc:  # reported to the main thread, which drops the plan
            print(f"{self.proc}: plan {plan.seq}: group setup failed: {exc!r}", file=sys.stderr)
            pending.error = exc
        finally:
            pending.finished.set()

    def _start_pending(self, plan: Plan) -> None:
        self.pending = Pending(plan)
        if plan.two_phase:
            threading.Thread(target=self._build_for, args=(plan, self.pending), daemon=True).start()

    def _ready_seq(self) -> int:
        pending = self.pending
        if pending is None:
            return 0
        if self._has(keys.abort(pending.plan.seq)) or pending.error is not None:
            self.pending = None
            return 0
        if not pending.plan.two_phase or pending.finished.is_set():
            return pending.plan.seq
        return 0

    # ---- training rank -------------------------------------------------------------------
    def start_rank(self, rank: int, prefix: str, resume: bool) -> None:
        """A rank of the job's first generation (or of a restarted job)."""
        self.rank = rank
        stage = self.config.stage_of(rank)
        t0 = time.time()
        self.rt = Runtime.build(self.config, self.task, stage)
        t1 = time.time()
        groups = build_groups(
            self.store, prefix, rank, self.config.num_workers, self.config.pp,
            self.config.collective_timeout_s,
        )
        self.comm = GlooComm(groups)
        t2 = time.time()
        if resume and self._ckpt_path(stage).exists():  # no checkpoint yet: from the start
            self.it = load_checkpoint(self.rt, self._ckpt_path(stage))
        startup = {"init": [t0, t1], "groups": [t1, t2], "load": [t2, time.time()]}
        self.store.set(f"startup/{self.proc}", json.dumps(startup))
        self.handled = int(self.store.add(keys.PLAN_SEQ, 0))  # old plans are history
        self.train(record=not resume)

    def _ckpt_path(self, stage: int) -> Path:
        return self.run_dir / "ckpt" / f"stage{stage}.pt"

    def train(self, record: bool = False) -> None:
        """The training loop of a rank, until the last iteration."""
        import torch

        config = self.config
        while self.it < config.steps:
            assert self.rt is not None
            self.store.set(keys.heartbeat(self.proc), str(time.time()))
            for plan in self._new_plans():
                if plan.kind is PlanKind.RECOVER:
                    self.recover(plan)
                    break
                if plan.kind is PlanKind.MIGRATE and self.proc in (*plan.members, plan.leaver):
                    self._start_pending(plan)
                elif plan.kind is PlanKind.SAVE_EXIT:
                    self.save_seq = plan.seq
            if self.comm is None:
                self.recover(None)
                continue
            dp_rank = config.dp_rank_of(self.rank)
            recording = record and self.it == 0 and dp_rank == 0
            comm: Any = RecordingComm(self.comm) if recording else self.comm
            slow_key = keys.slow(self.proc)
            delay = config.step_delay_s + (
                float(self.store.get(slow_key)) if self._has(slow_key) else 0.0
            )
            try:
                if delay > 0:
                    time.sleep(delay)  # an injected straggler computes this much longer
                loss, compute_s = train_step(self.rt, comm, self.it, dp_rank)
                compute_s += delay
            except RuntimeError as exc:
                print(f"{self.proc}: step {self.it} failed at {time.time():.3f}: {exc}"[:200],
                      file=sys.stderr)
                self._drop_comm()
                continue
            self._log_step(loss, compute_s)
            if recording:
                self._save_records(comm.records)
            self.it += 1
            self.store.set(keys.progress(self.proc), str(self.it))
            if config.checkpoint_every and self.it % config.checkpoint_every == 0 and dp_rank == 0:
                save_checkpoint(self.rt, self.it, self._ckpt_path(self.rt.stage))
            ready = self._ready_seq()
            ctrl = torch.tensor([ready, -ready, self.save_seq, -self.save_seq], dtype=torch.float64)
            assert ctrl.numel() == NUM_CTRL
            try:
                self.comm.ctrl_all_reduce(ctrl)
            except RuntimeError as exc:
                print(f"{self.proc}: boundary {self.it} failed at {time.time():.3f}: {exc}"[:200],
                      file=sys.stderr)
                self._drop_comm()
                continue
            if ctrl[2] > 0 and ctrl[2] == -ctrl[3]:
                self._save_and_exit(int(ctrl[2]))
            if ctrl[0] > 0 and ctrl[0] == -ctrl[1]:
                self.switch()
        self.store.set(keys.done(self.proc), str(self.it))
        self._exit(0)

    def _save_records(self, records: list[tuple[str, torch.Tensor]]) -> None:
        import torch

        assert self.rt is not None
        path = self.run_dir / "records" / f"stage{self.rt.stage}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(records, path)
        self.store.set(keys.records(self.rt.stage), str(path))

    def _save_and_exit(self, seq: int) -> None:
        assert self.rt is not None
        if self.config.dp_rank_of(self.rank) == 0:
            t0 = time.time()
            save_checkpoint(self.rt, self.it, self._ckpt_path(self.rt.stage))
            self._timing(seq, save=(t0, time.time()))
        self.store.set(keys.switched(seq, self.proc), str(self.it - 1))
        self._exit(0)

    def switch(self) -> None:
        """Phase 2 at an iteration boundary: leave (sending state) or swap to the next group."""
        pending = self.pending
        assert pending is not None
        plan = pending.plan
        self.pending = None
        if not plan.two_phase:
            self._build_for(plan, pending)  # naive: on the critical path
        if pending.error is not None:  # naive build failed (joiner gone): recover instead
            self._drop_comm()
            return
        self.store.set(keys.switched(plan.seq, self.proc), str(self.it - 1))
        if self.proc == plan.leaver:
            assert pending.pair is not None and self.rt is not None
            t0 = time.time()
            try:
                self._send_state(pending.pair)
            except RuntimeError:  # the joiner died: keep our state, let the controller recover
                self._drop_comm()
                return
            self._timing(plan.seq, transfer=(t0, time.time()))
            if not plan.recycle_leaver:
                self._exit(0)
            self.warm = {self.rt.stage: self.rt}  # our runtime is as warm as it gets
            self._parked.append(self.comm)
            self.comm = None
            self.standby_loop()
        assert pending.groups is not None
        t0 = time.time()
        self.rank = plan.members.index(self.proc)
        # The old generation is parked, not destroyed: gloo's teardown blocks the interpreter
        # for ~0.1-0.4 s, which would land on the critical path. Idle groups hold no tensors.
        self._parked.append(self.comm)
        self.comm = GlooComm(pending.groups)
        self._timing(plan.seq, swap=(t0, time.time()))

    def _send_state(self, pair: Group) -> None:
        import torch

        assert self.rt is not None
        broadcast(pair, torch.tensor([self.it, self.rt.stage], dtype=torch.int64), 0)
        for tensor in self.rt.state_tensors():
            broadcast(pair, tensor, 0)

    # ---- recovery after a crash ----------------------------------------------------------
    def recover(self, plan: Plan | None) -> None:
        """Wait for the RECOVER plan, join its generation, resync state from a replica."""
        self._drop_comm()
        self.pending = None
        self.store.set(keys.failed(self.proc), str(self.it))
        deadline = time.time() + PLAN_WAIT_S
        while plan is None:
            for new in self._new_plans():
                if new.kind is PlanKind.RECOVER:
                    plan = new
            if plan is None:
                if time.time() > deadline:
                    raise JobTimeoutError(f"{self.proc}: no RECOVER plan in {PLAN_WAIT_S:.0f} s")
                self.store.set(keys.heartbeat(self.proc), str(time.time()))
                time.sleep(0.01)
        if self.proc not in plan.members:
            self._exit(0)
        self._timing(plan.seq, detect=(self._t_error, time.time()))
        self._join_recovery(plan)

    def _join_recovery(self, plan: Plan) -> None:
        import torch

        t0 = time.time()
        self.rank = plan.members.index(self.proc)
        groups = build_groups(
            self.store, plan.prefix, self.rank, self.config.num_workers, self.config.pp,
            self.config.collective_timeout_s,
        )
        t1 = time.time()
        assert self.rt is not None
        dp = self.config.dp
        its = torch.full((dp,), -1.0, dtype=torch.float64)
        its[self.config.dp_rank_of(self.rank)] = self.it
        all_reduce_max(groups.dp, its)
        best = int(its.max())
        if best < 0:
            raise ReplacementFailed(f"plan {plan.seq}: no data-parallel replica holds the state")
        agree = torch.tensor([best, -best], dtype=torch.float64)
        all_reduce_max(groups.world, agree)
        if agree[0] != -agree[1]:
            raise ReplacementFailed(
                f"plan {plan.seq}: stages stopped at different iterations {agree.tolist()}; "
                "use checkpoint-restart"
            )
        source = int((its == best).nonzero()[0])
        for tensor in self.rt.state_tensors():
            broadcast(groups.dp, tensor, source)
        self.it = best
        self.comm = GlooComm(groups)
        self._timing(plan.seq, groups=(t0, t1), transfer=(t1, time.time()))

    # ---- standby -------------------------------------------------------------------------
    def run_standby(self, warm: bool) -> None:
        """Warm up (sandbox) if asked, then wait for a plan naming this process as joiner."""
        t0 = time.time()
        if warm:
            self.warm_up()
        # A standby reads every plan, also those posted before it started: a cold joiner is
        # started *for* a plan that already names it.
        self.handled = 0
        self.standby_loop((t0, time.time()))

    def standby_loop(self, warm_up: tuple[float, float] | None = None) -> None:
        """Wait for a plan naming this process as joiner, then train as that rank."""
        self.store.set(keys.standby_free(self.proc), "1")  # free first, then warm: no race
        if self.warm:
            warm_up = warm_up or (time.time(), time.time())
            self.store.set(keys.standby_warm(self.proc), json.dumps(list(warm_up)))
        while True:
            self.store.set(keys.standby_free(self.proc), "1")
            self.store.set(keys.heartbeat(self.proc), str(time.time()))
            for plan in self._new_plans():
                if plan.joiner == self.proc and self.promote(plan):
                    self.train()
            time.sleep(0.01)

    def warm_up(self) -> None:
        """Sandboxed lazy init: per stage role, build the runtime and run a shadow iteration.

        The shadow iteration's collectives are answered from the outputs recorded at job start,
        so every first-iteration cost (autograd graph, allocator, optimizer state) is paid here,
        off the critical path, with no peer involved.
        """
        import torch

        for stage in range(self.config.pp):
            path = self.store.get(keys.records(stage)).decode()  # blocks until recorded
            records = torch.load(path, weights_only=True)
            rt = Runtime.build(self.config, self.task, stage)
            replay = ReplayComm(records)
            train_step(rt, replay, 0, 0)
            self.warm[stage] = rt

    def promote(self, plan: Plan) -> bool:
        """Become rank ``plan.rank``; False if the plan was aborted before the switch."""
        import torch

        self.store.delete_key(keys.standby_free(self.proc))
        self._injected_fault()
        stage = self.config.stage_of(plan.rank)
        pending = Pending(plan)
        if plan.kind is PlanKind.RECOVER:
            self.rt = self._runtime_for(plan.seq, stage)
            self.it = -1
            self._join_recovery(plan)
            self.store.set(keys.joined(plan.seq), str(self.it))
            return True
        if plan.two_phase:
            threading.Thread(target=self._build_for, args=(plan, pending), daemon=True).start()
            while not pending.finished.wait(0.01):
                if self._has(keys.abort(plan.seq)):
                    return False
        else:
            self._build_for(plan, pending)
        if pending.error is not None or self._has(keys.abort(plan.seq)):
            return False
        self.rt = self._runtime_for(plan.seq, stage)
        assert pending.pair is not None and pending.groups is not None
        t0 = time.time()
        meta = torch.zeros(2, dtype=torch.int64)
        try:
            broadcast(pending.pair, meta, 0)
            for tensor in self.rt.state_tensors():
                broadcast(pending.pair, tensor, 0)
        except RuntimeError:
            return False
        self._timing(plan.seq, transfer=(t0, time.time()))
        self.it = int(meta[0])
        self.rank = plan.rank
        self.comm = GlooComm(pending.groups)
        self.store.set(keys.joined(plan.seq), str(self.it))
        return True

    def _injected_fault(self) -> None:
        """Fault injection for tests and demos: a joiner that crashes or stalls when promoted."""
        key = keys.inject(self.proc)
        if not self._has(key):
            return
        action = json.loads(self.store.get(key))
        if action.get("crash"):
            self._exit(3)
        time.sleep(float(action.get("delay_s", 0.0)))

    def _runtime_for(self, seq: int, stage: int) -> Runtime:
        if stage in self.warm:
            return self.warm[stage]
        t0 = time.time()
        rt = Runtime.build(self.config, self.task, stage)  # cold: no sandbox ran
        rt.state_tensors()
        self._timing(seq, init=(t0, time.time()))
        return rt

    def _exit(self, code: int) -> None:
        if self._log is not None:
            self._log.flush()
        os._exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point of a member process (arguments are written by the controller)."""
    parser = argparse.ArgumentParser(prog="trainmover-worker")
    parser.add_argument("--proc", required=True)
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--store-port", required=True, type=int)
    parser.add_argument("--rank", type=int, default=-1)
    parser.add_argument("--prefix", default="g0")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--cold", action="store_true", help="standby without sandbox warm-up")
    parser.add_argument("--torchrun", action="store_true", help="launched by torchrun")
    args = parser.parse_args(argv)
    booted = time.time()
    config = JobConfig.from_json(args.config.read_text(encoding="utf-8"))
    if args.torchrun:  # rank and incarnation come from torch elastic's environment
        args.rank = int(os.environ["RANK"])
        restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
        args.proc, args.prefix = f"t{args.rank}", f"t{restart}"
        args.resume = restart > 0
    member = Member(args.proc, config, args.run_dir, args.store_port)
    spawned = float(os.environ.get("TRAINMOVER_SPAWN_T", booted))
    member.store.set(f"boot/{args.proc}", json.dumps([spawned, time.time()]))
    if args.rank >= 0:
        member.start_rank(args.rank, args.prefix, args.resume)
    else:
        member.run_standby(warm=config.warm_standby and not args.cold)


if __name__ == "__main__":
    main()
    sys.exit(0)
