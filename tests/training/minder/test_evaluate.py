from __future__ import annotations

from pathlib import Path

import pytest

from mlsyskit.errors import DataError
from mlsyskit.training.minder.alerts import Alert
from mlsyskit.training.minder.evaluate import Scores, match_job, read_faults, summarise
from mlsyskit.training.minder.generator import FaultLabel

FAULT = FaultLabel("m3", "ecc_error", start_s=100.0, end_s=400.0)


def _alert(machine: str, at: float) -> Alert:
    return Alert(machine, "cpu_usage", at - 240, at, 1.0)


def test_alert_on_the_faulty_machine_within_grace_is_a_true_positive() -> None:
    out = match_job([_alert("m3", 350.0)], [FAULT], grace_s=60)
    assert (out.true_positives, out.false_positives, out.false_negatives) == (1, 0, 0)
    assert out.delays_s == (250.0,)
    late_ok = match_job([_alert("m3", 460.0)], [FAULT], grace_s=60)
    assert late_ok.true_positives == 1


def test_too_late_too_early_or_wrong_machine_is_a_false_positive_and_a_miss() -> None:
    for alert in (_alert("m3", 461.0), _alert("m3", 99.0), _alert("m1", 300.0)):
        out = match_job([alert], [FAULT], grace_s=60)
        assert (out.true_positives, out.false_positives, out.false_negatives) == (0, 1, 1)


def test_duplicates_count_once() -> None:
    out = match_job([_alert("m3", 300), _alert("m3", 380), _alert("m1", 200),
                     _alert("m1", 250)], [FAULT])
    assert (out.true_positives, out.false_positives, out.false_negatives) == (1, 1, 0)


def test_fault_free_job_counts_false_positives_per_machine() -> None:
    out = match_job([_alert("m0", 300), _alert("m0", 700)], [])
    assert out.false_positives == 1 and out.fault_types == ("none",)
    assert match_job([], []).false_positives == 0


def test_summary_numbers_by_hand() -> None:
    outcomes = [
        match_job([_alert("m3", 300)], [FAULT]),  # TP
        match_job([], [FaultLabel("m1", "straggler", 0, 500)]),  # FN
        match_job([_alert("m0", 300)], []),  # FP
        match_job([_alert("m3", 300)], [FAULT]),  # TP
    ]
    report = summarise(outcomes)
    assert (report.overall.tp, report.overall.fp, report.overall.fn) == (2, 1, 1)
    assert report.overall.precision == pytest.approx(2 / 3)
    assert report.overall.recall == pytest.approx(2 / 3)
    assert report.overall.f1 == pytest.approx(2 / 3)
    assert report.by_type["straggler"].recall == 0.0
    assert report.by_type["none"].fp == 1
    assert report.mean_delay_s == 200.0
    assert Scores(0, 0, 0).f1 == 0.0


def test_read_faults_validates(tmp_path: Path) -> None:
    good = tmp_path / "faults.csv"
    good.write_text("machine,fault_type,start,end\nm1,straggler,10,20\n")
    assert read_faults(good) == [FaultLabel("m1", "straggler", 10.0, 20.0)]
    bad = tmp_path / "bad.csv"
    bad.write_text("machine,fault_type,start,end\nm1,straggler,30,20\n")
    with pytest.raises(DataError, match=r"line 2: end 20\.0 is before start 30\.0"):
        read_faults(bad)
    cols = tmp_path / "cols.csv"
    cols.write_text("machine,start,end\nm1,1,2\n")
    with pytest.raises(DataError, match="fault_type"):
        read_faults(cols)
