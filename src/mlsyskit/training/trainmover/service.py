"""The controller as a long-running service, and the client side the CLI's other verbs use.

``trainmover run`` starts a job and serves it: it answers requests that ``trainmover migrate``
(or ``rebalance``) posts into the job's store, and recovers from crashes it detects
(``trainmover kill`` is fault injection: it SIGKILLs a rank; the service notices by itself).
Requests and answers travel through the same torch ``TCPStore`` the job coordinates with; the
store's port is in ``<run-dir>/controller.json``.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlsyskit.errors import ConfigError
from mlsyskit.training.trainmover import keys
from mlsyskit.training.trainmover.api import TrainMoverJob
from mlsyskit.training.trainmover.errors import JobTimeoutError, TrainMoverError
from mlsyskit.training.trainmover.protocol import ReplacementResult

if TYPE_CHECKING:
    import torch.distributed as dist


def result_dict(result: ReplacementResult) -> dict[str, Any]:
    payload = asdict(result)
    payload["event"] = result.event.value
    payload["state"] = result.state.value
    payload["breakdown_s"] = dict(result.breakdown_s)
    return payload


def serve(job: TrainMoverJob, report: Callable[[str], None]) -> None:
    """Run the job to its end, answering requests and recovering from crashes."""
    ctl = job.controller
    handled = 0
    while not all(ctl.has(keys.done(p)) for p in ctl.members):
        latest = int(ctl.store.add(keys.REQUEST_SEQ, 0))
        for seq in range(handled + 1, latest + 1):
            handled = seq
            request = json.loads(ctl.store.get(keys.request(seq)))
            try:
                if request["op"] == "migrate":
                    result: ReplacementResult | None = job.migrate(int(request["rank"]))
                else:
                    result = job.rebalance()
                answer: dict[str, Any] = {"ok": True, "result": result and result_dict(result)}
            except TrainMoverError as exc:
                answer = {"ok": False, "error": str(exc)}
            ctl.store.set(f"response/{seq}", json.dumps(answer))
            report(f"request {seq} {request}: {answer}")
        failure = ctl.poll_failure()
        if failure is not None:
            rank, t_detect = failure
            killed = f"killed/{rank}"
            t_event = t_detect
            if ctl.has(killed):
                t_event = float(ctl.store.get(killed))
                ctl.store.delete_key(killed)
            result = job.strategy.failure(ctl, rank, t_event)
            report(f"rank {rank} crashed; recovered: downtime {result.downtime_s:.3f} s")
        time.sleep(0.02)


class JobClient:
    """Talks to a running ``trainmover run`` through its store (for migrate/kill/status)."""

    def __init__(self, run_dir: Path, timeout_s: float = 10.0) -> None:
        import torch.distributed as dist

        info_path = run_dir / "controller.json"
        if not info_path.exists():
            raise ConfigError(f"{info_path}: no running job here (start one with trainmover run)")
        info = json.loads(info_path.read_text(encoding="utf-8"))
        try:
            os.kill(int(info["pid"]), 0)
        except ProcessLookupError as exc:
            raise ConfigError(f"{info_path}: its controller (pid {info['pid']}) is gone") from exc
        try:
            self.store: dist.TCPStore = dist.TCPStore(
                "127.0.0.1", int(info["port"]), None, False,
                timeout=datetime.timedelta(seconds=timeout_s),
            )
        except RuntimeError as exc:
            raise TrainMoverError(f"job at {run_dir} does not answer: {exc}") from exc

    def status(self) -> dict[str, Any]:
        state = json.loads(self.store.get(keys.MEMBERS))
        progress = {}
        for proc in state["members"]:
            key = keys.progress(proc)
            progress[proc] = int(self.store.get(key)) if self.store.check([key]) else 0
        return {**state, "progress": progress}

    def request(self, op: str, timeout_s: float = 300.0, **fields: Any) -> dict[str, Any]:
        seq = int(self.store.add(keys.REQUEST_SEQ, 1))
        # written after the increment: the service only reads a request once it exists
        self.store.set(keys.request(seq), json.dumps({"op": op, **fields}))
        deadline = time.time() + timeout_s
        while not self.store.check([f"response/{seq}"]):
            if time.time() > deadline:
                raise JobTimeoutError(f"no answer to request {seq} in {timeout_s:.0f} s")
            time.sleep(0.05)
        answer: dict[str, Any] = json.loads(self.store.get(f"response/{seq}"))
        return answer

    def kill(self, rank: int) -> str:
        """SIGKILL the process holding ``rank``; returns its process id."""
        members = self.status()["members"]
        if not 0 <= rank < len(members):
            raise ConfigError(f"rank {rank} out of range: the job has ranks 0..{len(members) - 1}")
        proc = members[rank]
        self.store.set(f"killed/{rank}", repr(time.time()))
        os.kill(int(self.store.get(keys.pid(proc))), signal.SIGKILL)
        return str(proc)
