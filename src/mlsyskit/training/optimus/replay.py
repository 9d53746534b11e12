"""Independent replay checker: re-executes any :class:`Schedule` and lists violations.

Written apart from the scheduler on purpose: it re-derives the rules from task metadata
(LLM pipeline order, encoder stage order, the global ordering EF_i <= F_i and its backward
mirror, one task at a time per device resource, kernel order) rather than trusting the
producer's dependency list, then re-runs the task graph as-soon-as-possible (dependencies,
its own DP rules, release times and per-resource order) to get its own iteration time.

DP collectives are not taken on trust either: an all-gather must end before the first
forward that uses the parameters it gathers, a reduce-scatter may start only after the last
backward whose gradients it reduces (:func:`dp_rules`), and re-execution adds those edges.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field

from mlsyskit.training.optimus.costmodel import Direction
from mlsyskit.training.optimus.schedule import Owner, Schedule, Task

TOL = 1e-9
OpId = tuple[Owner, int, Direction | None, int, int]  # owner, pipeline, direction, stage, mb


@dataclass
class ReplayReport:
    """Violations found (empty = valid) and the replayed iteration time."""

    schedule: str
    violations: list[str] = field(default_factory=list)
    replay_makespan_s: float = 0.0
    scheduled_makespan_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def rel_diff(self) -> float:
        """|replayed - producer's estimate| / replayed."""
        return abs(self.replay_makespan_s - self.scheduled_makespan_s) / self.replay_makespan_s


def _ops(tasks: list[Task], report: ReplayReport) -> dict[OpId, tuple[float, float]]:
    """Group kernels into ops; check kernel order; return op -> (start, end)."""
    groups: dict[OpId, list[Task]] = defaultdict(list)
    for t in tasks:
        groups[(t.owner, t.pipeline, t.direction, t.stage, t.mb)].append(t)
    out = {}
    for key, ks in groups.items():
        ks.sort(key=lambda t: t.index)
        for a, b in itertools.pairwise(ks):
            if b.start_s < a.end_s - TOL:
                report.violations.append(f"kernel order: {key} kernel {b.index} starts before "
                                         f"kernel {a.index} ends")
        devices = {t.device for t in ks}
        if len(devices) != 1:
            report.violations.append(f"op {key} spans devices {sorted(devices)}")
        out[key] = (ks[0].start_s, ks[-1].end_s)
    return out


def dp_rules(tasks: list[Task], report: ReplayReport | None = None) -> list[tuple[int, int]]:
    """The replay's own DP rules, as edges ``(before, after)``.

    A parameter all-gather of ``X`` (LLM or encoder) on a device must end before any forward
    kernel of ``X`` on that device starts (it brings the weights), and a gradient
    reduce-scatter of ``X`` may start only after every backward kernel of ``X`` on that
    device (it ships their gradients).  Derived from task metadata, not from the producer's
    edges.  With ``report``, missing or unlabelled collectives are reported.
    """
    kernels: dict[tuple[int, Owner, Direction], list[Task]] = defaultdict(list)
    dp: dict[tuple[int, Owner, Direction], list[Task]] = defaultdict(list)
    for t in tasks:
        if t.owner is Owner.DP:
            if t.params_of is None or t.direction is None:
                if report is not None:
                    report.violations.append(f"DP task {t.tid} ({t.name}) does not say whose "
                                             "parameters it moves or which way")
                continue
            dp[(t.device, t.params_of, t.direction)].append(t)
        elif t.direction is not None:
            kernels[(t.device, t.owner, t.direction)].append(t)
    edges: list[tuple[int, int]] = []
    for (d, owner, direction), ks in kernels.items():
        colls = dp.get((d, owner, direction), [])
        what = "all-gather" if direction is Direction.FWD else "reduce-scatter"
        if not colls and report is not None:
            report.violations.append(f"device {d}: no DP {what} of {owner.value} parameters")
        for c in colls:
            if direction is Direction.FWD:
                edges += [(c.tid, k.tid) for k in ks]
                first = min(k.start_s for k in ks)
                if report is not None and c.end_s > first + TOL:
                    report.violations.append(
                        f"device {d}: DP all-gather of {owner.value} parameters ends at "
                        f"{c.end_s:.6f}, after the first {owner.value} forward at {first:.6f}")
            else:
                edges += [(k.tid, c.tid) for k in ks]
                last = max(k.end_s for k in ks)
                if report is not None and c.start_s < last - TOL:
                    report.violations.append(
                        f"device {d}: DP reduce-scatter of {owner.value} gradients starts at "
                        f"{c.start_s:.6f}, before the last {owner.value} backward ends at "
                        f"{last:.6f}")
    return edges


def check_rules(s: Schedule, report: ReplayReport) -> None:
    """Semantic checks from metadata alone."""
    tasks = list(s.tasks)
    for t in tasks:
        if t.start_s < -TOL or t.end_s < t.start_s - TOL:
            report.violations.append(f"task {t.tid} has bad times [{t.start_s}, {t.end_s}]")
    # one task at a time per (device, resource)
    lanes: dict[tuple[int, object], list[Task]] = defaultdict(list)
    for t in tasks:
        lanes[(t.device, t.resource)].append(t)
    for lane, ts in lanes.items():
        ts.sort(key=lambda t: (t.start_s, t.end_s))
        for a, b in itertools.pairwise(ts):
            if b.start_s < a.end_s - TOL:
                report.violations.append(
                    f"overlap on device {lane[0]} {lane[1].value}: {a.owner.value}:{a.name} "  # type: ignore[attr-defined]
                    f"and {b.owner.value}:{b.name} at {b.start_s:.6f}"
                )
    for t in tasks:
        if t.start_s < t.release_s - TOL:
            report.violations.append(f"task {t.tid} ({t.name}) starts before its release time")
    dp_rules(tasks, report)  # reports DP collectives that break them
    ops = _ops([t for t in tasks if t.owner is not Owner.DP], report)
    fwd, bwd = Direction.FWD, Direction.BWD
    llm: dict[tuple[Direction | None, int, int], tuple[float, float]] = {
        (k[2], k[3], k[4]): v for k, v in ops.items() if k[0] is Owner.LLM
    }
    llm_dev = {(t.direction, t.stage, t.mb): t.device for t in tasks if t.owner is Owner.LLM}
    num_v = 1 + max((k[1] for k in llm), default=-1)
    num_mb = 1 + max((k[2] for k in llm), default=-1)
    lag = s.llm_p2p_s
    for (direction, v, mb), (start, _) in llm.items():
        if llm_dev[(direction, v, mb)] != v % s.llm_pp:
            report.violations.append(f"LLM stage {v} on the wrong device")
        if direction is fwd and v > 0:
            need = llm[(fwd, v - 1, mb)][1] + lag
        elif direction is bwd and v < num_v - 1:
            need = llm[(bwd, v + 1, mb)][1] + lag
        elif direction is bwd:
            need = llm[(fwd, v, mb)][1]
        else:
            continue
        if start < need - TOL:
            report.violations.append(f"LLM {direction} stage {v} mb {mb} starts early")
    enc: dict[tuple[int, Direction | None, int, int], tuple[float, float]] = {
        (k[1], k[2], k[3], k[4]): v for k, v in ops.items() if k[0] is Owner.ENCODER
    }
    if not enc:
        return
    last = s.enc_stages - 1
    for (p, direction, k, mb), (start, _) in enc.items():
        if direction is fwd and k > 0:
            need = enc[(p, fwd, k - 1, mb)][1] + s.enc_p2p_s
        elif direction is bwd and k < last:
            need = enc[(p, bwd, k + 1, mb)][1] + s.enc_p2p_s
        else:
            continue
        if start < need - TOL:
            report.violations.append(f"encoder stage order: pipeline {p} {direction} "
                                     f"stage {k} mb {mb}")
    # global ordering: i-th finished encoder microbatch feeds LLM microbatch i
    ef = sorted((end, p, mb) for (p, d, k, mb), (_, end) in enc.items() if d is fwd and k == last)
    if len(ef) * s.multiplicity != num_mb:
        report.violations.append(f"{len(ef)} x {s.multiplicity} encoder microbatches for "
                                 f"{num_mb} LLM microbatches")
        return
    for r, (end, p, mb) in enumerate(ef):
        for c in range(s.multiplicity):
            i = r * s.multiplicity + c
            if end + s.enc_to_llm_s > llm[(fwd, 0, i)][0] + TOL:
                report.violations.append(f"EF > F for LLM microbatch {i}")
            if (p, bwd, last, mb) not in enc:
                report.violations.append(f"encoder pipeline {p} mb {mb} has no backward")
            elif enc[(p, bwd, last, mb)][0] < llm[(bwd, 0, i)][1] + s.enc_to_llm_s - TOL:
                report.violations.append(f"EB < B for LLM microbatch {i}")


def reexecute(s: Schedule) -> dict[int, tuple[float, float]]:
    """ASAP times under the claimed dependencies and each lane's scheduled order."""
    n = len(s.tasks)
    preds: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    for d in s.deps:
        preds[d.after].append((d.before, d.lag_s))
    for before, after in dp_rules(list(s.tasks)):
        preds[after].append((before, 0.0))
    lanes: dict[tuple[int, object], list[Task]] = defaultdict(list)
    for t in s.tasks:
        lanes[(t.device, t.resource)].append(t)
    for ts in lanes.values():
        ts.sort(key=lambda t: (t.start_s, t.tid))
        for a, b in itertools.pairwise(ts):
            preds[b.tid].append((a.tid, 0.0))
    succs: list[list[int]] = [[] for _ in range(n)]
    indeg = [0] * n
    for v, ps in enumerate(preds):
        for u, _ in ps:
            succs[u].append(v)
            indeg[v] += 1
    ready = [v for v in range(n) if indeg[v] == 0]
    times: dict[int, tuple[float, float]] = {}
    dur = [t.end_s - t.start_s for t in s.tasks]
    release = [max(0.0, t.release_s) for t in s.tasks]
    while ready:
        v = ready.pop()
        st = max((times[u][1] + lag for u, lag in preds[v]), default=release[v])
        st = max(st, release[v])
        times[v] = (st, st + dur[v])
        for w in succs[v]:
            indeg[w] -= 1
            if indeg[w] == 0:
                ready.append(w)
    return times


def replay(s: Schedule) -> ReplayReport:
    """Check ``s`` and re-execute it; see the module docstring."""
    report = ReplayReport(s.name, scheduled_makespan_s=s.makespan_s)
    check_rules(s, report)
    for d in s.deps:
        a, b = s.tasks[d.before], s.tasks[d.after]
        if b.start_s < a.end_s + d.lag_s - TOL:
            report.violations.append(f"dependency {a.name}->{b.name} (tasks {a.tid}->{b.tid})")
    times = reexecute(s)
    if len(times) != len(s.tasks):
        report.violations.append("dependency cycle: some tasks never become ready")
    report.replay_makespan_s = max((e for _, e in times.values()), default=0.0)
    return report
