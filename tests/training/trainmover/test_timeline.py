"""Downtime, loss-curve and memory arithmetic on hand-made step logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlsyskit.errors import DataError
from mlsyskit.training.trainmover.timeline import (
    StepRecord,
    completion_times,
    find_straggler,
    last_completed_before,
    loss_curve,
    max_abs_diff,
    median_step,
    overlap,
    read_steps,
    stall,
    stayer_memory_delta_mb,
    step_jitter,
)


def rec(proc: str, rank: int, it: int, t: float, loss: float | None = 1.0, peak: float = 100.0) -> (
    StepRecord
):
    return StepRecord(proc, rank, it, t, loss, 0.01, peak, peak)


def test_completion_time_is_the_slowest_rank_and_the_first_completion() -> None:
    records = [
        rec("w0", 0, 5, 10.0), rec("w1", 1, 5, 10.2),
        # rank 1 re-computes iteration 5 after a restart: not progress
        rec("w9", 1, 5, 30.0),
        rec("w0", 0, 6, 11.0),  # rank 1 never completed 6
    ]
    assert completion_times(records, num_ranks=2) == {5: 10.2}


def test_downtime_formula_by_hand() -> None:
    # steps of 1 s, then a 4 s stall after iteration 5
    times = {i: float(i) for i in range(6)} | {6: 9.0, 7: 10.0, 8: 11.0, 9: 12.0}
    assert median_step(times, exclude=range(4, 8)) == 1.0
    assert stall(times, 5) == (5.0, 9.0, 1)
    start, end, _ = stall(times, 5)
    assert end - start - median_step(times, exclude=range(4, 8)) == 3.0
    assert last_completed_before(times, 7.5) == 5
    assert step_jitter(times, exclude=range(4, 8)) == 0.0
    with pytest.raises(DataError):
        stall(times, 9)
    with pytest.raises(DataError):
        last_completed_before(times, -1.0)


def test_stall_spans_an_iteration_the_dead_rank_never_logged() -> None:
    # the stayers finished 6 before the crash, the joiner resumed at 7: 6 is progress, not lost
    times = {i: float(i) for i in range(6)} | {7: 10.0, 8: 11.0}
    start, end, num_steps = stall(times, 5)
    assert (start, end, num_steps) == (5.0, 10.0, 2)
    assert end - start - num_steps * 1.0 == 3.0


def test_overlap() -> None:
    assert overlap([1.0, 3.0], (2.0, 5.0)) == 1.0
    assert overlap([6.0, 7.0], (2.0, 5.0)) == 0.0


def test_loss_curve_keeps_the_first_report_and_skips_stage0() -> None:
    records = [
        rec("w0", 0, 0, 1.0, loss=None), rec("w1", 1, 0, 1.1, loss=0.5),
        rec("w1", 1, 1, 2.0, loss=0.4), rec("w9", 1, 1, 9.0, loss=0.3),
    ]
    assert loss_curve(records) == {0: 0.5, 1: 0.4}
    assert max_abs_diff({0: 0.5, 1: 0.4}, {0: 0.5, 1: 0.1}) == pytest.approx(0.3)
    with pytest.raises(DataError, match="different iterations"):
        max_abs_diff({0: 0.5}, {1: 0.5})


def test_stayer_memory_delta() -> None:
    records = [rec("w0", 0, i, float(i), peak=100.0 + (2.0 if i >= 6 else 0.0)) for i in range(10)]
    records += [rec("w2", 2, i, float(i), peak=50.0) for i in range(10)]
    assert stayer_memory_delta_mb(records, ["w0", "w2"], i_star=5) == 2.0
    with pytest.raises(DataError):
        stayer_memory_delta_mb(records, ["w7"], i_star=5)


def test_read_steps_names_file_and_line(tmp_path: Path) -> None:
    steps = tmp_path / "steps"
    steps.mkdir()
    good = {"proc": "w0", "rank": 0, "it": 0, "t": 1.0, "loss": 0.5, "compute_s": 0.1,
            "rss_mb": 1.0, "peak_mb": 1.0}
    (steps / "w0.jsonl").write_text(json.dumps(good) + "\n{not json}\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"w0.jsonl:2"):
        read_steps(tmp_path)
    (steps / "w0.jsonl").write_text(json.dumps(good) + "\n", encoding="utf-8")
    assert read_steps(tmp_path) == [StepRecord(**good)]


def test_find_straggler_uses_compute_time() -> None:
    def step(proc: str, rank: int, it: int, compute: float) -> StepRecord:
        return StepRecord(proc, rank, it, float(it), 1.0, compute, 1.0, 1.0)

    records = [step("w0", 0, i, 0.05) for i in range(10)]
    records += [step("w1", 1, i, 0.05 if i < 5 else 0.15) for i in range(10)]
    records += [step("w2", 2, i, 0.05) for i in range(10)]
    assert find_straggler(records, ["w0", "w1", "w2"], window=5) == 1
    assert find_straggler(records, ["w0", "w1", "w2"], window=5, threshold=4.0) is None
    assert find_straggler(records, ["w0", "w2"]) is None  # w1 is no member any more
    assert find_straggler([], ["w0"]) is None
