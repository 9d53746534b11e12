"""Detection over stored tables and live sources: repeated passes, one alert per machine.

Production Minder runs a pass every 8 minutes over the last 15 minutes of data. Over a stored
table the same schedule is replayed (passes end every ``interval_s``; each sees ``span_s``);
over a live source, :func:`watch` does it in real time. A machine already alerted in a job is not
re-alerted by later passes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlsyskit.errors import DataError
from mlsyskit.training.minder.alerts import Alert
from mlsyskit.training.minder.detector import Minder
from mlsyskit.training.minder.frame import MetricFrame, align
from mlsyskit.training.minder.sources import MetricSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PassSchedule:
    """How often a pass runs and how much data it sees (paper: every 480 s over 900 s)."""

    span_s: float = 900.0
    interval_s: float = 480.0
    step_s: float = 1.0


def split_jobs(table: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """The table per ``job`` (a column written by ``minder generate``), or ``("", table)``."""
    if "job" not in table.columns:
        yield "", table
        return
    for job, part in table.groupby("job", sort=True, observed=True):
        yield str(job), part


def job_frames(table: pd.DataFrame, metrics: list[str] | None = None,
               step_s: float = 1.0) -> list[tuple[str, MetricFrame]]:
    """Every job of a table aligned onto its own grid."""
    return [(job, align(part, step_s=step_s, metrics=metrics)) for job, part in split_jobs(table)]


def pass_windows(start_s: float, end_s: float, schedule: PassSchedule) -> list[tuple[float,
                                                                                   float]]:
    """``(from, to)`` of every pass over ``[start_s, end_s]``; the last pass ends at ``end_s``."""
    if end_s - start_s <= schedule.span_s:
        return [(start_s, end_s)]
    ends = [*np.arange(start_s + schedule.span_s, end_s, schedule.interval_s), end_s]
    return [(float(max(start_s, e - schedule.span_s)), float(e)) for e in ends]


def detect_frame(minder: Minder, frame: MetricFrame, schedule: PassSchedule,
                 job: str = "") -> list[Alert]:
    """Replay the pass schedule over one job; at most one alert per machine."""
    alerts: list[Alert] = []
    seen: set[str] = set()
    ts = frame.timestamps
    for a, b in pass_windows(float(ts[0]), float(ts[-1]), schedule):
        try:
            window = frame.slice_time(a, b + frame.step_s / 2)
            alert = minder.detect(window, job=job)
        except DataError as exc:
            log.warning("job %s, pass [%.0f, %.0f]: skipped: %s", job or "-", a, b, exc)
            continue
        if alert is not None and alert.machine not in seen:
            seen.add(alert.machine)
            alerts.append(alert)
    return alerts


def watch(
    minder: Minder,
    source: MetricSource,
    schedule: PassSchedule,
    emit: Callable[[Alert], None],
    max_passes: int | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Run passes against a live source forever (or ``max_passes``); returns passes run.

    An empty window or a missing metric skips that pass with a logged warning; the loop goes
    on. The clock and sleep are injectable so tests run without waiting.
    """
    passes = 0
    seen: set[str] = set()
    while max_passes is None or passes < max_passes:
        now = clock()
        try:
            table = source.fetch(now - schedule.span_s, now, schedule.step_s)
            frame = align(table, step_s=schedule.step_s, metrics=list(minder.scorer_.metrics_))
            alert = minder.detect(frame)
        except DataError as exc:
            log.warning("pass at %.0f skipped: %s", now, exc)
            alert = None
        passes += 1
        if alert is not None and alert.machine not in seen:
            seen.add(alert.machine)
            emit(alert)
        if max_passes is None or passes < max_passes:
            sleep(schedule.interval_s)
    return passes
