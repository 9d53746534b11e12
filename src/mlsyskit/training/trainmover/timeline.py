"""Turning members' step logs into downtime, loss curves and memory deltas.

Every member appends one JSON line per completed iteration to ``steps/<proc>.jsonl``. From those
lines, ``T(i)`` is the time at which *every* rank had completed iteration ``i`` for the first
time (a rank's re-computation after a restart is not progress). Downtime of an event after
iteration ``i*`` is ``T(i*+1) - T(i*) - median step``: the stall, lost work included, beyond what
that iteration would have taken anyway. The same formula serves every strategy.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mlsyskit.errors import DataError


@dataclass(frozen=True)
class StepRecord:
    """One completed iteration on one process."""

    proc: str
    rank: int
    it: int
    t: float
    loss: float | None
    compute_s: float
    rss_mb: float
    peak_mb: float


def read_steps(run_dir: Path) -> list[StepRecord]:
    """All step records under ``run_dir/steps``.

    Raises
    ------
    DataError
        A line is not a valid record (the message names the file and line).
    """
    records = []
    for path in sorted((run_dir / "steps").glob("*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(StepRecord(**json.loads(line)))
            except (TypeError, ValueError) as exc:
                raise DataError(f"{path}:{number}: bad step record: {exc}") from exc
    return records


def completion_times(records: Iterable[StepRecord], num_ranks: int) -> dict[int, float]:
    """``T(i)`` for every iteration that all ``num_ranks`` ranks completed."""
    first: dict[tuple[int, int], float] = {}
    for rec in records:
        key = (rec.it, rec.rank)
        first[key] = min(first.get(key, rec.t), rec.t)
    by_it: dict[int, list[float]] = {}
    for (it, _), t in first.items():
        by_it.setdefault(it, []).append(t)
    return {it: max(ts) for it, ts in by_it.items() if len(ts) == num_ranks}


def median_step(times: Mapping[int, float], exclude: Iterable[int] = (), warmup: int = 2) -> float:
    """Median of ``T(i+1) - T(i)`` over normal iterations (not the first ``warmup`` ones)."""
    skip = set(exclude)
    gaps = [
        times[i + 1] - times[i]
        for i in sorted(times)
        if i >= warmup and i + 1 in times and i not in skip
    ]
    if not gaps:
        raise DataError("no normal iterations to take a median step time from")
    return statistics.median(gaps)


def step_jitter(times: Mapping[int, float], exclude: Iterable[int] = (), warmup: int = 2) -> float:
    """Median absolute deviation of normal step times: the resolution of a downtime figure."""
    skip = set(exclude)
    gaps = [
        times[i + 1] - times[i]
        for i in sorted(times)
        if i >= warmup and i + 1 in times and i not in skip
    ]
    if not gaps:
        raise DataError("no normal iterations to take a step-time jitter from")
    mid = statistics.median(gaps)
    return statistics.median(abs(g - mid) for g in gaps)


def last_completed_before(times: Mapping[int, float], t_event: float) -> int:
    """The last iteration every rank had completed by ``t_event``."""
    done = [it for it, t in times.items() if t <= t_event]
    if not done:
        raise DataError("the event happened before the first iteration completed")
    return max(done)


def stall(times: Mapping[int, float], i_star: int) -> tuple[float, float, int]:
    """The stall window ``(T(i*), T(j), j - i*)``, with ``j`` the next iteration all ranks logged.

    Usually ``j = i* + 1``. After a crash, the stayers may already have finished ``i* + 1``
    while the dead rank never logged it; the joiner then starts from the replica's state at
    ``i* + 2``, so ``i* + 1`` is progress (not lost work) yet has no full set of records. The
    window then spans ``j - i*`` iterations, and the caller subtracts that many normal steps.
    """
    later = [it for it in times if it > i_star]
    if i_star not in times or not later:
        raise DataError(f"iteration {i_star} and a later complete one are not in the step logs")
    j = min(later)
    return times[i_star], times[j], j - i_star


def overlap(interval: Sequence[float], window: tuple[float, float]) -> float:
    """Seconds of ``interval`` that fall inside ``window``."""
    return max(0.0, min(interval[1], window[1]) - max(interval[0], window[0]))


def loss_curve(records: Iterable[StepRecord]) -> dict[int, float]:
    """Iteration -> replica-mean loss (the first report of each iteration)."""
    curve: dict[int, tuple[float, float]] = {}
    for rec in records:
        if rec.loss is None:
            continue
        if rec.it not in curve or rec.t < curve[rec.it][0]:
            curve[rec.it] = (rec.t, rec.loss)
    return {it: loss for it, (_, loss) in sorted(curve.items())}


def max_abs_diff(a: Mapping[int, float], b: Mapping[int, float]) -> float:
    """Largest |a(i) - b(i)| over the iterations both curves have.

    Raises
    ------
    DataError
        The curves share no iteration, or do not cover the same iterations.
    """
    if set(a) != set(b) or not a:
        raise DataError(f"loss curves cover different iterations: {len(a)} vs {len(b)} points")
    return max(abs(a[i] - b[i]) for i in a)


def stayer_memory_delta_mb(
    records: Iterable[StepRecord], stayers: Iterable[str], i_star: int, after: int = 3
) -> float:
    """Largest growth of a stayer's peak RSS from iteration ``i*`` to ``i* + after``."""
    by_proc: dict[str, dict[int, float]] = {}
    for rec in records:
        by_proc.setdefault(rec.proc, {})[rec.it] = rec.peak_mb
    deltas = []
    for proc in stayers:
        peaks = by_proc.get(proc, {})
        if i_star in peaks and i_star + after in peaks:
            deltas.append(peaks[i_star + after] - peaks[i_star])
    if not deltas:
        raise DataError("no stayer logged both ends of the memory window")
    return max(deltas)


def find_straggler(
    records: Iterable[StepRecord], members: Sequence[str], window: int = 5, threshold: float = 1.2
) -> int | None:
    """The rank whose median compute time over the last ``window`` iterations exceeds
    ``threshold`` times the median of the other ranks' medians, or None.

    Compute time (before the gradient all-reduce) separates the straggler from its peers,
    whose extra time is spent waiting inside the all-reduce.
    """
    current = [r for r in records if r.proc in set(members)]
    if not current:
        return None
    last = max(r.it for r in current)
    per_rank: dict[int, list[float]] = {}
    for rec in current:
        if rec.it > last - window:
            per_rank.setdefault(rec.rank, []).append(rec.compute_s)
    medians = {rank: statistics.median(v) for rank, v in per_rank.items()}
    slowest = max(medians, key=lambda r: medians[r])
    others = [m for r, m in medians.items() if r != slowest]
    if others and medians[slowest] > threshold * statistics.median(others):
        return slowest
    return None
