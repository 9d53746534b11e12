"""Per-rank interpreter that executes a :class:`Schedule` on CPU with real torch kernels.

The rank walks its tasks in scheduled order (not at scheduled times): compute kernels run
real island forwards/backwards, TP collectives and DP collectives are emulated timed waits
(the core is free meanwhile, so encoder kernels placed there really fill them), pipeline
data moves with gloo ``isend``/``recv`` plus the sender's ready time.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from mlsyskit.training.optimus.costmodel import Direction
from mlsyskit.training.optimus.cpu_model import (
    COMM,
    IslandLayer,
    LayerRun,
    kernel_names,
    run_bwd_kernel,
    run_fwd_kernel,
)
from mlsyskit.training.optimus.schedule import Owner, Resource, Schedule, Task

FWD_ACT, BWD_GRAD, ENC_OUT, ENC_GRAD = 1, 2, 3, 4


def _tag(kind: int, v: int, mb: int, part: int) -> int:
    return ((kind * 64 + v) * 64 + mb) * 2 + part


ExecList = list[tuple[IslandLayer, int, str]]  # (layer, layer position in op, kernel name)


def exec_list(layers: list[tuple[IslandLayer, bool]], direction: Direction) -> ExecList:
    """Kernels of an op in cost-model order; ``bool`` = LLM layer (has emulated collectives)."""
    out: ExecList = []
    seq = list(enumerate(layers))
    if direction is Direction.BWD:
        seq = seq[::-1]
    for pos, (layer, is_llm) in seq:
        for name in kernel_names(direction):
            if name in COMM and not is_llm:
                continue
            out.append((layer, pos, name))
    return out


@dataclass
class OpRun:
    """Per-(op, microbatch) layer state."""

    runs: dict[int, LayerRun] = field(default_factory=dict)
    comm_done: float = 0.0


@dataclass
class Program:
    """What one rank executes for one schedule."""

    schedule: Schedule
    llm_fwd: dict[int, ExecList]  # vstage -> kernels
    llm_bwd: dict[int, ExecList]
    enc_fwd: ExecList
    enc_bwd: ExecList
    enc_device: dict[int, int]  # encoder pipeline -> rank
    llm_mb_of: dict[tuple[int, int], int]  # (pipeline, enc mb) -> LLM microbatch
    num_stages: int


def llm_mapping(s: Schedule) -> dict[tuple[int, int], int]:
    """Global ordering: the i-th finished encoder microbatch feeds LLM microbatch i."""
    ends: dict[tuple[int, int], float] = {}
    last = s.enc_stages - 1
    for t in s.tasks:
        if t.owner is Owner.ENCODER and t.direction is Direction.FWD and t.stage == last:
            key = (t.pipeline, t.mb)
            ends[key] = max(ends.get(key, 0.0), t.end_s)
    return {key: r for r, (_, key) in enumerate(sorted((e, k) for k, e in ends.items()))}


class Interpreter:
    """Runs one iteration of a program on this rank; returns kernel timings."""

    def __init__(self, prog: Program, rank: int, images: list[torch.Tensor],
                 targets: list[torch.Tensor]) -> None:
        self.p, self.rank = prog, rank
        self.images, self.targets = images, targets
        self.sends: list[dist.Work | None] = []
        self.enc_out: dict[int, tuple[torch.Tensor, float]] = {}
        self.enc_grad: dict[int, tuple[torch.Tensor, float]] = {}
        self.loss_grad: dict[int, tuple[torch.Tensor, float]] = {}
        self.loss = 0.0

    def _send(self, tensor: torch.Tensor, ready: float, dst: int, kind: int, v: int,
              mb: int) -> None:
        self.sends.append(dist.isend(tensor.contiguous(), dst, tag=_tag(kind, v, mb, 0)))
        self.sends.append(dist.isend(torch.tensor([ready], dtype=torch.float64), dst,
                                     tag=_tag(kind, v, mb, 1)))

    def _recv(self, like: torch.Tensor, src: int, kind: int, v: int, mb: int
              ) -> tuple[torch.Tensor, float]:
        buf = torch.empty_like(like)
        when = torch.empty(1, dtype=torch.float64)
        dist.recv(buf, src, tag=_tag(kind, v, mb, 0))
        dist.recv(when, src, tag=_tag(kind, v, mb, 1))
        return buf, float(when.item())

    @staticmethod
    def _wait_until(t: float) -> None:
        # sleep() can overshoot by milliseconds when the OS is busy, which would turn every
        # emulated collective into a longer one; sleep most of a long wait, then spin.
        delay = t - time.perf_counter()
        if delay > 2e-3:
            time.sleep(delay - 1e-3)
        while time.perf_counter() < t:
            pass

    def run(self) -> tuple[list[tuple[Task, float, float]], float]:
        """Execute; returns (task, start, end) for every executed task and the end time."""
        p, s = self.p, self.p.schedule
        mine = sorted((t for t in s.tasks if t.device == self.rank), key=lambda t: (t.start_s,
                                                                                    t.tid))
        t0 = time.perf_counter()
        dp = {t.name: t.duration_s for t in mine if t.owner is Owner.DP}
        enc_ag_done = t0 + dp.get("dp_ag_enc", 0.0)
        llm_ag_done = enc_ag_done + dp.get("dp_ag_llm", dp.get("dp_ag", 0.0))
        ops: dict[tuple[object, ...], OpRun] = defaultdict(OpRun)
        record: list[tuple[Task, float, float]] = []
        like = self.images[0]
        last_llm = last_enc = t0
        top = p.num_stages - 1
        for t in mine:
            if t.owner is Owner.DP:
                continue
            is_llm = t.owner is Owner.LLM
            fwd = t.direction is Direction.FWD
            if is_llm:
                kernels = (p.llm_fwd if fwd else p.llm_bwd)[t.stage]
                key: tuple[object, ...] = ("llm", t.stage, t.mb)  # fwd and bwd share state
            else:
                kernels = p.enc_fwd if fwd else p.enc_bwd
                key = ("enc", t.pipeline, t.mb)
            op = ops[key]
            layer, pos, name = kernels[t.index]
            if t.index == 0:
                x, ready = self._op_input(t, is_llm, fwd, like, top)
                self._wait_until(max(ready, llm_ag_done if is_llm else enc_ag_done))
                first_layer = kernels[0][1]
                if fwd:
                    op.runs[first_layer] = LayerRun()
                    op.runs[first_layer].vals["x"] = x
                else:
                    op.runs[first_layer].grads["out"] = x
            run = op.runs.setdefault(pos, LayerRun())
            if t.resource is Resource.LINK:
                start = time.perf_counter()
                op.comm_done = start + t.duration_s
                record.append((t, start, op.comm_done))
            else:
                self._wait_until(op.comm_done)
                self._carry(op, pos, fwd)
                start = time.perf_counter()
                if fwd:
                    run_fwd_kernel(layer, run, name)
                else:
                    run_bwd_kernel(run, name)
                end = time.perf_counter()
                record.append((t, start, end))
                if is_llm:
                    last_llm = end
                else:
                    last_enc = end
            if t.index == len(kernels) - 1:
                ready = max(time.perf_counter(), op.comm_done)
                self._op_output(t, op, pos, is_llm, fwd, ready, top)
        rs_llm_done = last_llm + dp.get("dp_rs_llm", dp.get("dp_rs", 0.0))
        end = max(rs_llm_done, last_enc) + dp.get("dp_rs_enc", 0.0)
        for w in self.sends:
            if w is not None:
                w.wait()
        self._wait_until(end)
        return record, end

    @staticmethod
    def _carry(op: OpRun, pos: int, fwd: bool) -> None:
        """Hand a layer's output (fwd) or input gradient (bwd) to the next layer of the op."""
        run = op.runs[pos]
        if fwd and "x" not in run.vals:
            run.vals["x"] = op.runs[pos - 1].vals["out"]
        if not fwd and "out" not in run.grads:
            run.grads["out"] = op.runs[pos + 1].grads["x"]

    def _op_input(self, t: Task, is_llm: bool, fwd: bool, like: torch.Tensor, top: int
                  ) -> tuple[torch.Tensor, float]:
        p = self.p
        if not is_llm:
            llm_mb = p.llm_mb_of[(t.pipeline, t.mb)]
            if fwd:
                return self.images[llm_mb], 0.0
            if self.rank == 0:
                return self.enc_grad.pop(llm_mb)
            return self._recv(like, 0, ENC_GRAD, 0, llm_mb)
        v, mb = t.stage, t.mb
        if fwd and v == 0:
            if not p.enc_device:  # encoder inside the first LLM stage (Megatron-LM)
                return self.images[mb], 0.0
            if mb in self.enc_out:
                return self.enc_out.pop(mb)
            return self._recv(like, 1, ENC_OUT, 0, mb)
        if fwd:
            return self._recv(like, (v - 1) % p.schedule.llm_pp, FWD_ACT, v - 1, mb)
        if v == top:
            return self.loss_grad.pop(mb)
        return self._recv(like, (v + 1) % p.schedule.llm_pp, BWD_GRAD, v + 1, mb)

    def _op_output(self, t: Task, op: OpRun, pos: int, is_llm: bool, fwd: bool, ready: float,
                   top: int) -> None:
        p = self.p
        run = op.runs[pos]
        if not is_llm:
            if fwd:
                llm_mb = p.llm_mb_of[(t.pipeline, t.mb)]
                if self.rank == 0:
                    self.enc_out[llm_mb] = (run.vals["out"], ready)
                else:
                    self._send(run.vals["out"], ready, 0, ENC_OUT, 0, llm_mb)
            return
        v, mb = t.stage, t.mb
        if fwd and v < top:
            self._send(run.vals["out"], ready, (v + 1) % p.schedule.llm_pp, FWD_ACT, v, mb)
        elif fwd:
            out = run.vals["out"].detach().requires_grad_(True)
            loss = torch.nn.functional.mse_loss(out, self.targets[mb]) / len(self.targets)
            loss.backward()
            assert out.grad is not None
            self.loss += float(loss.item())
            self.loss_grad[mb] = (out.grad, ready)
        elif v > 0:
            self._send(run.grads["x"], ready, (v - 1) % p.schedule.llm_pp, BWD_GRAD, v, mb)
        elif p.enc_device:
            enc_rank = next(p.enc_device[g] for (g, m), i in p.llm_mb_of.items() if i == mb)
            if enc_rank == self.rank:
                self.enc_grad[mb] = (run.grads["x"], ready)
            else:
                self._send(run.grads["x"], ready, enc_rank, ENC_GRAD, 0, mb)
