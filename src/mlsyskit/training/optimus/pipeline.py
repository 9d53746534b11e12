"""Pipeline simulator: Megatron 1F1B / interleaved-1F1B timelines of one LLM pipeline replica.

By symmetry every DP replica and every TP rank of a stage has the same timeline, so a
3,072-GPU job (DP48 x PP8 x TP8) is simulated as the 8 stage-devices of one replica.
An op is the forward or backward of one (virtual stage, microbatch); its duration is the sum
of its kernels, and TP collectives inside it are the *TP bubbles* of the compute stream.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum

from mlsyskit.training.optimus.costmodel import Direction, Kernel, Stream
from mlsyskit.training.optimus.errors import OptimusError


class BubbleType(Enum):
    """The paper's bubble taxonomy (Table 1)."""

    DP_ALL_GATHER = "DP all-gather"
    DP_REDUCE_SCATTER = "DP reduce-scatter"
    PP_WARMUP = "PP warm-up"
    PP_COOLDOWN = "PP cool-down"
    PP_OTHER = "PP other"
    TP = "TP"


@dataclass(frozen=True)
class StageWork:
    """The work of one virtual stage for one microbatch.

    ``fwd`` / ``bwd`` are kernel sequences (bwd includes any recompute); ``params`` is the
    number of weights per GPU (for DP collectives and memory); ``out_bytes`` is the P2P
    payload to the next stage.
    """

    fwd: tuple[Kernel, ...]
    bwd: tuple[Kernel, ...]
    params: float
    out_bytes: float

    @property
    def fwd_s(self) -> float:
        return sum(k.duration_s for k in self.fwd)

    @property
    def bwd_s(self) -> float:
        return sum(k.duration_s for k in self.bwd)


@dataclass(frozen=True)
class OpKey:
    """Forward or backward of virtual stage ``vstage`` for microbatch ``mb``."""

    direction: Direction
    vstage: int
    mb: int


@dataclass(frozen=True)
class PipelineSpec:
    """One LLM pipeline replica: ``pp`` devices, ``virtual`` chunks each, ``num_mb`` microbatches.

    ``stages[v]`` runs on device ``v % pp`` as its chunk ``v // pp``; ``p2p_s`` is the lag of
    an activation or gradient transfer between neighbouring stages.
    """

    pp: int
    virtual: int
    num_mb: int
    stages: tuple[StageWork, ...]
    p2p_s: float
    interleaved: bool

    def __post_init__(self) -> None:
        if len(self.stages) != self.pp * self.virtual:
            raise OptimusError(f"{len(self.stages)} stages for pp={self.pp} x V={self.virtual}")

    def device_of(self, vstage: int) -> int:
        return vstage % self.pp

    def work(self, op: OpKey) -> tuple[Kernel, ...]:
        st = self.stages[op.vstage]
        return st.fwd if op.direction is Direction.FWD else st.bwd


def op_order(spec: PipelineSpec, device: int) -> list[OpKey]:
    """Megatron's per-device op order (1F1B, or interleaved 1F1B when ``spec.interleaved``)."""
    pp, v, n = spec.pp, spec.virtual, spec.num_mb
    if not spec.interleaved:
        stage = device
        warm = min(pp - device - 1, n)
        order = [OpKey(Direction.FWD, stage, i) for i in range(warm)]
        for i in range(n - warm):
            order.append(OpKey(Direction.FWD, stage, warm + i))
            order.append(OpKey(Direction.BWD, stage, i))
        order += [OpKey(Direction.BWD, stage, i) for i in range(n - warm, n)]
        return order
    total = n * v
    warm = min((pp - device - 1) * 2 + (v - 1) * pp, total)

    def fwd(k: int) -> OpKey:
        chunk = (k // pp) % v
        return OpKey(Direction.FWD, chunk * pp + device, (k // (pp * v)) * pp + k % pp)

    def bwd(k: int) -> OpKey:
        chunk = v - 1 - (k // pp) % v
        return OpKey(Direction.BWD, chunk * pp + device, (k // (pp * v)) * pp + k % pp)

    order = [fwd(k) for k in range(warm)]
    for i in range(total - warm):
        order.append(fwd(warm + i))
        order.append(bwd(i))
    order += [bwd(k) for k in range(total - warm, total)]
    return order


@dataclass
class Timeline:
    """Simulated op start/end times of one pipeline replica (seconds from step start).

    ``mb_release`` keeps the release times of stage 0's first forwards the timeline was
    simulated with (None: as soon as possible), so a task list built from it can carry
    those deliberate delays.
    """

    spec: PipelineSpec
    orders: list[list[OpKey]]
    start: dict[OpKey, float] = field(default_factory=dict)
    end: dict[OpKey, float] = field(default_factory=dict)
    mb_release: tuple[float, ...] | None = None

    def first_start(self, device: int) -> float:
        return self.start[self.orders[device][0]]

    def last_end(self, device: int) -> float:
        return self.end[self.orders[device][-1]]

    def fwd_dependency(self, mb: int) -> float:
        """F_i: when stage 0 starts the forward of chunk 0 for microbatch ``mb``."""
        return self.start[OpKey(Direction.FWD, 0, mb)]

    def bwd_dependency(self, mb: int) -> float:
        """B_i: when stage 0 finishes the backward of chunk 0 for microbatch ``mb``."""
        return self.end[OpKey(Direction.BWD, 0, mb)]

    def kernels(self, device: int) -> Iterator[tuple[float, float, Kernel, OpKey]]:
        """Every kernel interval of ``device`` in time order: (start, end, kernel, op)."""
        for op in self.orders[device]:
            t = self.start[op]
            for k in self.spec.work(op):
                yield t, t + k.duration_s, k, op
                t += k.duration_s

    def shifted(self, delta: float) -> Timeline:
        """The same timeline, every op ``delta`` seconds later."""
        return Timeline(
            self.spec, self.orders, {k: v + delta for k, v in self.start.items()},
            {k: v + delta for k, v in self.end.items()},
            None if self.mb_release is None else tuple(r + delta for r in self.mb_release),
        )


def simulate(
    spec: PipelineSpec, device_release: Sequence[float], mb_release: Sequence[float] | None = None,
) -> Timeline:
    """Run the pipeline as-soon-as-possible under Megatron's op order.

    Parameters
    ----------
    device_release
        Earliest time each device may start LLM work (e.g. after its DP all-gather).
    mb_release
        Earliest start of stage 0's first forward for each microbatch (encoder outputs).

    Raises
    ------
    OptimusError
        The op order deadlocks (a malformed pipeline).
    """
    orders = [op_order(spec, d) for d in range(spec.pp)]
    durations: dict[tuple[Direction, int], float] = {}
    for v, st in enumerate(spec.stages):
        durations[(Direction.FWD, v)] = st.fwd_s
        durations[(Direction.BWD, v)] = st.bwd_s
    tl = Timeline(spec, orders, mb_release=None if mb_release is None else tuple(mb_release))
    last_v = spec.pp * spec.virtual - 1
    pos = [0] * spec.pp
    free = list(device_release)
    remaining = sum(len(o) for o in orders)
    while remaining:
        progressed = False
        for d in range(spec.pp):
            while pos[d] < len(orders[d]):
                op = orders[d][pos[d]]
                if op.direction is Direction.FWD:
                    if op.vstage == 0:
                        ready = mb_release[op.mb] if mb_release is not None else 0.0
                    else:
                        prev = tl.end.get(OpKey(Direction.FWD, op.vstage - 1, op.mb))
                        if prev is None:
                            break
                        ready = prev + spec.p2p_s
                elif op.vstage == last_v:
                    prev = tl.end.get(OpKey(Direction.FWD, op.vstage, op.mb))
                    if prev is None:
                        break
                    ready = prev
                else:
                    prev = tl.end.get(OpKey(Direction.BWD, op.vstage + 1, op.mb))
                    if prev is None:
                        break
                    ready = prev + spec.p2p_s
                t0 = max(free[d], ready)
                t1 = t0 + durations[(op.direction, op.vstage)]
                tl.start[op], tl.end[op] = t0, t1
                free[d] = t1
                pos[d] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            raise OptimusError("pipeline op order deadlocked")
    return tl


Bubble = tuple[float, float, BubbleType]  # start, end, type


def bubble_intervals(
    tl: Timeline, ag_end: Sequence[float], rs_s: Sequence[float], makespan: float,
) -> list[list[Bubble]]:
    """Every idle interval of each device's compute stream, labelled, in time order.

    DP all-gather: [0, ag_end); PP warm-up: from there to the first op; PP other: gaps
    between ops; TP: TP collectives inside ops; DP reduce-scatter: right after the last op
    for ``rs_s``; PP cool-down: from there to ``makespan``.  Per GPU (the paper's Table 1 is
    their average, :func:`bubble_breakdown`), so a report can show where each bubble sits.
    """
    out: list[list[Bubble]] = []
    for d in range(tl.spec.pp):
        first, last = tl.first_start(d), tl.last_end(d)
        items: list[Bubble] = []
        if ag_end[d] > 0.0:
            items.append((0.0, ag_end[d], BubbleType.DP_ALL_GATHER))
        if first > ag_end[d]:
            items.append((ag_end[d], first, BubbleType.PP_WARMUP))
        prev_end: float | None = None
        for op in tl.orders[d]:
            if prev_end is not None and tl.start[op] > prev_end:
                items.append((prev_end, tl.start[op], BubbleType.PP_OTHER))
            prev_end = tl.end[op]
        for s, e, k, _ in tl.kernels(d):
            if k.stream is Stream.COMM and e > s:
                items.append((s, e, BubbleType.TP))
        if rs_s[d] > 0.0:
            items.append((last, last + rs_s[d], BubbleType.DP_REDUCE_SCATTER))
        if makespan > last + rs_s[d]:
            items.append((last + rs_s[d], makespan, BubbleType.PP_COOLDOWN))
        out.append(sorted(items, key=lambda b: (b[0], b[1])))
    return out


def bubble_breakdown(
    tl: Timeline, ag_end: Sequence[float], rs_s: Sequence[float], makespan: float,
) -> dict[BubbleType, float]:
    """Seconds of each bubble type, averaged over devices (compute stream idle); the per-GPU
    intervals are :func:`bubble_intervals`."""
    out = dict.fromkeys(BubbleType, 0.0)
    for items in bubble_intervals(tl, ag_end, rs_s, makespan):
        for s, e, kind in items:
            out[kind] += e - s
    return {k: v / tl.spec.pp for k, v in out.items()}


def latest_fwd_starts(tl: Timeline, tail_s: Sequence[float]) -> list[float]:
    """Latest start of each microbatch's first forward (stage 0, chunk 0) that keeps the
    iteration end, by critical-path slack over the op graph.

    Why: Optimus defers the LLM's forward dependency points F_i (the paper adjusts the
    warm-up microbatches per stage) so that encoder forwards have more time, *without*
    lengthening the LLM.  Edges are each device's op order and the pipeline data edges
    (with the P2P lag); device ``d``'s last op must end ``tail_s[d]`` (its DP
    reduce-scatter) before the iteration end.  Re-simulating with these release times
    keeps every device's end no later than before (each op starts by its latest start).
    """
    spec = tl.spec
    end_all = max(tl.last_end(d) + tail_s[d] for d in range(spec.pp))
    last_v = spec.pp * spec.virtual - 1
    succ: dict[OpKey, list[tuple[OpKey, float]]] = {op: [] for op in tl.start}
    deadline: dict[OpKey, float] = {}
    for d in range(spec.pp):
        order = tl.orders[d]
        for a, b in itertools.pairwise(order):
            succ[a].append((b, 0.0))
        deadline[order[-1]] = end_all - tail_s[d]
    for op in tl.start:
        if op.direction is Direction.FWD and op.vstage < last_v:
            succ[op].append((OpKey(Direction.FWD, op.vstage + 1, op.mb), spec.p2p_s))
        elif op.direction is Direction.FWD:
            succ[op].append((OpKey(Direction.BWD, op.vstage, op.mb), 0.0))
        elif op.vstage > 0:
            succ[op].append((OpKey(Direction.BWD, op.vstage - 1, op.mb), spec.p2p_s))
    latest: dict[OpKey, float] = {}
    # successors start strictly after an op starts (durations > 0): reverse start order
    for op in sorted(tl.start, key=lambda o: (tl.start[o], tl.end[o]), reverse=True):
        finish = deadline.get(op, float("inf"))
        for nxt, lag in succ[op]:
            finish = min(finish, latest[nxt] - lag)
        latest[op] = finish - (tl.end[op] - tl.start[op])
    return [latest[OpKey(Direction.FWD, 0, i)] for i in range(spec.num_mb)]
