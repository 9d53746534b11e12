"""Turn scheduler states and baseline timelines into :class:`Schedule` task lists."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

from mlsyskit.training.optimus.costmodel import Direction, Kernel, Stream
from mlsyskit.training.optimus.pipeline import OpKey, Timeline
from mlsyskit.training.optimus.schedule import Dep, Owner, Resource, Schedule, Task
from mlsyskit.training.optimus.scheduler import Context, Evaluation, State

_RES = {Stream.COMPUTE: Resource.COMPUTE, Stream.COMM: Resource.LINK}


class _Builder:
    def __init__(self) -> None:
        self.tasks: list[Task] = []
        self.deps: list[Dep] = []

    def add(self, device: int, resource: Resource, start: float, end: float, owner: Owner,
            direction: Direction | None, stage: int, mb: int, pipeline: int, index: int,
            name: str) -> int:
        tid = len(self.tasks)
        self.tasks.append(Task(tid, device, resource, start, end, owner, direction, stage, mb,
                               pipeline, index, name))
        return tid

    def dp(self, device: int, start: float, duration: float, direction: Direction,
           params_of: Owner, index: int, name: str) -> int:
        """A DP collective: all-gather (``FWD``) or reduce-scatter (``BWD``) of ``params_of``."""
        tid = len(self.tasks)
        self.tasks.append(Task(tid, device, Resource.DP_LINK, start, start + duration, Owner.DP,
                               direction, device, -1, -1, index, name, params_of=params_of))
        return tid

    def release(self, tid: int, at: float) -> None:
        """Keep task ``tid`` from starting before ``at`` (a deliberate delay)."""
        t = self.tasks[tid]
        self.tasks[tid] = dataclasses.replace(t, release_s=max(t.release_s, at))

    def dep(self, before: int, after: int, lag: float = 0.0) -> None:
        self.deps.append(Dep(before, after, lag))

    def chain(self, device: int, kernels: Sequence[Kernel], starts: Sequence[float],
              owner: Owner, direction: Direction, stage: int, mb: int, pipeline: int,
              ) -> tuple[int, int]:
        """Add an op's kernels at the given starts, chained; return (first, last) ids."""
        prev = -1
        first = -1
        for i, (k, s) in enumerate(zip(kernels, starts, strict=True)):
            tid = self.add(device, _RES[k.stream], s, s + k.duration_s, owner, direction, stage,
                           mb, pipeline, i, k.name)
            if prev >= 0:
                self.dep(prev, tid)
            else:
                first = tid
            prev = tid
        return first, prev


def _sequential(start: float, kernels: Sequence[Kernel]) -> list[float]:
    out, t = [], start
    for k in kernels:
        out.append(t)
        t += k.duration_s
    return out


def _llm_tasks(b: _Builder, tl: Timeline, delta: float, release: Sequence[int]
               ) -> tuple[dict[OpKey, tuple[int, int]], list[int]]:
    """LLM kernels of every device at T0 + delta; returns op -> (first, last) and last ids.

    Every delay the timeline was simulated with becomes a release time of the task it holds
    back: each device's first op (the LLM starts at T0 + delta, not as soon as its inputs
    allow) and, on a timeline with deferred forwards, stage 0's first forward of every
    microbatch.  Without them the replay would start those ops earlier than the producer's
    estimate assumes.
    """
    spec = tl.spec
    ops: dict[OpKey, tuple[int, int]] = {}
    last_ids = []
    for d in range(spec.pp):
        prev_last = release[d]
        for op in tl.orders[d]:
            kernels = spec.work(op)
            first, last = b.chain(d, kernels, _sequential(tl.start[op] + delta, kernels),
                                  Owner.LLM, op.direction, op.vstage, op.mb, -1)
            b.dep(prev_last, first)
            ops[op] = (first, last)
            prev_last = last
        last_ids.append(prev_last)
        b.release(ops[tl.orders[d][0]][0], tl.first_start(d) + delta)
    if tl.mb_release is not None:
        for mb, at in enumerate(tl.mb_release):
            b.release(ops[OpKey(Direction.FWD, 0, mb)][0], at + delta)
    top = spec.pp * spec.virtual - 1
    for op, (first, _) in ops.items():
        if op.direction is Direction.FWD and op.vstage > 0:
            b.dep(ops[OpKey(Direction.FWD, op.vstage - 1, op.mb)][1], first, spec.p2p_s)
        elif op.direction is Direction.BWD and op.vstage < top:
            b.dep(ops[OpKey(Direction.BWD, op.vstage + 1, op.mb)][1], first, spec.p2p_s)
        elif op.direction is Direction.BWD:
            b.dep(ops[OpKey(Direction.FWD, op.vstage, op.mb)][1], first)
    return ops, last_ids


def baseline_schedule(name: str, tl: Timeline, ag_s: Sequence[float], rs_s: Sequence[float],
                      makespan_s: float) -> Schedule:
    """A baseline's iteration (encoder layers inside the LLM stages) as a task list."""
    b = _Builder()
    ag = [b.dp(d, 0.0, ag_s[d], Direction.FWD, Owner.LLM, 0, "dp_ag") for d in range(tl.spec.pp)]
    _, last = _llm_tasks(b, tl, 0.0, ag)
    for d in range(tl.spec.pp):
        end = b.tasks[last[d]].end_s
        rs = b.dp(d, end, rs_s[d], Direction.BWD, Owner.LLM, 1, "dp_rs")
        b.dep(last[d], rs)
    return Schedule(name, tl.spec.pp, tuple(b.tasks), tuple(b.deps), makespan_s, tl.spec.pp,
                    tl.spec.p2p_s)


def optimus_schedule(name: str, ctx: Context, st: State, ev: Evaluation, *,
                     barrier: bool = False) -> Schedule:
    """A coarse or fine Optimus state as a task list (LLM at T0 + delta).

    ``barrier``: the serial encoder-then-LLM baseline (:func:`~.scheduler.serial_evaluation`);
    every LLM op waits for every encoder forward and every encoder backward for the whole
    LLM, as dependency edges the replay re-executes.
    """
    b = _Builder()
    plan, n_dev, delta = ctx.plan, ctx.num_devices, ev.delta
    enc_ag, llm_ag = [], []
    for d in range(n_dev):
        enc_ag.append(b.dp(d, 0.0, ctx.ag_enc[d], Direction.FWD, Owner.ENCODER, 0, "dp_ag_enc"))
        llm_ag.append(b.dp(d, ctx.ag_enc[d], ctx.ag_llm[d], Direction.FWD, Owner.LLM, 1,
                           "dp_ag_llm"))
    # A static schedule pins each device's LLM start at T0 + delta (a release time set by
    # _llm_tasks): starting earlier would move the bubbles the fine step filled.
    ops, llm_last = _llm_tasks(b, ctx.t0, delta, llm_ag)
    # Encoder ops: (g, mb, k, dir) -> (first, last, start)
    enc: dict[tuple[int, int, int, Direction], tuple[int, int]] = {}
    per_device: dict[int, list[tuple[float, int, int]]] = {d: [] for d in range(n_dev)}
    coarse_pre: dict[int, list[tuple[float, int, int]]] = {d: [] for d in range(n_dev)}
    coarse_post: dict[int, list[tuple[float, int, int]]] = {d: [] for d in range(n_dev)}
    for (g, mb, k), t in ev.pre.items():
        kernels = ctx.enc_stages[k].fwd
        d = plan.device(g, k)
        ids = b.chain(d, kernels, _sequential(t.start, kernels), Owner.ENCODER, Direction.FWD,
                      k, mb, g)
        enc[(g, mb, k, Direction.FWD)] = ids
        per_device[d].append((t.start, *ids))
        coarse_pre[d].append((t.start, *ids))
    for (g, mb, k), t in ev.post.items():
        kernels = ctx.enc_stages[k].bwd
        d = plan.device(g, k)
        ids = b.chain(d, kernels, _sequential(t.start, kernels), Owner.ENCODER, Direction.BWD,
                      k, mb, g)
        enc[(g, mb, k, Direction.BWD)] = ids
        per_device[d].append((t.start, *ids))
        coarse_post[d].append((t.start, *ids))
    for direction, table in ((Direction.FWD, st.fine_fwd), (Direction.BWD, st.fine_bwd)):
        for (g, mb), op in table.items():
            for k, placements in op.stages.items():
                w = ctx.enc_stages[k]
                kernels = w.fwd if direction is Direction.FWD else w.bwd
                d = plan.device(g, k)
                ids = b.chain(d, kernels, [s + delta for s, _, _ in placements], Owner.ENCODER,
                              direction, k, mb, g)
                enc[(g, mb, k, direction)] = ids
                per_device[d].append((placements[0][0] + delta, *ids))
    last_stage = plan.pp - 1
    cols = plan.columns
    for (g, mb, k, direction), (first, _) in enc.items():
        if direction is Direction.FWD and k > 0:
            b.dep(enc[(g, mb, k - 1, direction)][1], first, ctx.enc_p2p_s)
        if direction is Direction.BWD and k < last_stage:
            b.dep(enc[(g, mb, k + 1, direction)][1], first, ctx.enc_p2p_s)
        if direction is Direction.BWD and k == last_stage:
            r = ev.slot[(g, mb)]
            for c in range(cols):
                b.dep(ops[OpKey(Direction.BWD, 0, r * cols + c)][1], first, ctx.enc_to_llm_s)
    for (g, mb), r in ev.slot.items():
        ef = enc[(g, mb, last_stage, Direction.FWD)][1]
        for c in range(cols):
            b.dep(ef, ops[OpKey(Direction.FWD, 0, r * cols + c)][0], ctx.enc_to_llm_s)
    # Coarse work runs back to back on its device (one stream); fine kernels sit in gaps and
    # may interleave across microbatches, so they are ordered only by their own chains.
    # Coarse backwards run after the device's LLM work (InitSchedule), including their
    # first kernel when it is a collective that could overlap the LLM's last compute.
    for d in range(n_dev):
        for seq in (sorted(coarse_pre[d]), sorted(coarse_post[d])):
            for (_, _, last), (_, first, _) in itertools.pairwise(seq):
                b.dep(last, first)
        if coarse_post[d]:
            b.dep(llm_last[d], min(coarse_post[d])[1])
    enc_last: dict[int, int] = {}
    for d, items in per_device.items():
        for _, first, _ in items:
            b.dep(enc_ag[d], first)
        if items:
            enc_last[d] = max((it[2] for it in items), key=lambda t: b.tasks[t].end_s)
    if barrier:
        llm_firsts = [ops[ctx.t0.orders[d][0]][0] for d in range(n_dev)]
        for (_g, _mb, k, direction), (first, last) in enc.items():
            if direction is Direction.FWD:
                lag = ctx.enc_to_llm_s if k == last_stage else 0.0
                for f in llm_firsts:
                    b.dep(last, f, lag)
            elif k == last_stage:
                for lid in llm_last:
                    b.dep(lid, first, ctx.enc_to_llm_s)
    for d in range(n_dev):
        t_end = b.tasks[llm_last[d]].end_s
        rs = b.dp(d, t_end, ctx.rs_llm[d], Direction.BWD, Owner.LLM, 2, "dp_rs_llm")
        b.dep(llm_last[d], rs)
        start = b.tasks[rs].end_s
        if d in enc_last:
            start = max(start, b.tasks[enc_last[d]].end_s)
        rs2 = b.dp(d, start, ctx.rs_enc[d], Direction.BWD, Owner.ENCODER, 3, "dp_rs_enc")
        b.dep(rs, rs2)
        if d in enc_last:
            b.dep(enc_last[d], rs2)
    return Schedule(name, n_dev, tuple(b.tasks), tuple(b.deps), ev.makespan_s, ctx.llm.pp,
                    ctx.llm.p2p_s, plan.pp, ctx.enc_p2p_s, ctx.enc_to_llm_s, cols)
