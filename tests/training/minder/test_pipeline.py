from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from mlsyskit.errors import DataError
from mlsyskit.training.minder.alerts import Alert
from mlsyskit.training.minder.pipeline import PassSchedule, pass_windows, split_jobs, watch


def test_pass_windows_replay_the_schedule() -> None:
    s = PassSchedule(span_s=900, interval_s=480)
    assert pass_windows(0, 600, s) == [(0, 600)]
    assert pass_windows(0, 2000, s) == [(0, 900), (480, 1380), (960, 1860), (1100, 2000)]


def test_split_jobs_by_column() -> None:
    table = pd.DataFrame({"timestamp": [0, 0], "machine": ["a", "b"], "metric": "x",
                          "value": [1, 2], "job": ["j2", "j1"]})
    assert [j for j, _ in split_jobs(table)] == ["j1", "j2"]
    assert [j for j, _ in split_jobs(table.drop(columns="job"))] == [""]


class _FakeMinder:
    """Names machine ``a`` on every pass whose data holds a value above 5."""

    class _Scorer:
        metrics_ = ("x",)

    scorer_ = _Scorer()

    def detect(self, frame: object, job: str = "") -> Alert | None:
        values = frame.values  # type: ignore[attr-defined]
        return Alert("a", "x", 0.0, 1.0, 1.0) if np.max(values) > 5 else None


class _FakeSource:
    def __init__(self) -> None:
        self.calls = 0

    def fetch(self, start_s: float, end_s: float, step_s: float = 1.0) -> pd.DataFrame:
        self.calls += 1
        if self.calls == 2:
            raise DataError("no samples between ...")
        value = 9.0 if self.calls >= 3 else 1.0
        return pd.DataFrame({"timestamp": [start_s, end_s], "machine": "a", "metric": "x",
                             "value": [value, value]})


def test_watch_skips_empty_passes_and_alerts_a_machine_once(
        caplog: pytest.LogCaptureFixture) -> None:
    emitted: list[Alert] = []
    sleeps: list[float] = []
    clock = iter(float(t) for t in range(1000, 2000, 10))
    with caplog.at_level(logging.WARNING):
        passes = watch(_FakeMinder(), _FakeSource(), PassSchedule(span_s=60, interval_s=10),  # type: ignore[arg-type]
                       emitted.append, max_passes=4, clock=lambda: next(clock),
                       sleep=sleeps.append)
    assert passes == 4
    assert [a.machine for a in emitted] == ["a"]
    assert sleeps == [10, 10, 10]
    assert "skipped: no samples" in caplog.text
