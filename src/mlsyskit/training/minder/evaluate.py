"""Matching alerts to labelled faults, and the precision / recall / F1 that follow.

Matching rule (stated once, used everywhere):

* An alert is a **true positive** for a fault when it names the fault's machine and its
  ``alert_time`` lies in ``[start, end + grace_s]``. Several alerts for one fault count once.
* A fault no alert matches is a **false negative**.
* An alert that matches no fault is a **false positive**; repeated unmatched alerts about the
  same machine of the same job count once, so a fault-free trace contributes at most one false
  positive per wrongly named machine (with one pass per trace: at most one).
* Detection delay is ``alert_time - start`` of the first matching alert.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlsyskit.errors import DataError
from mlsyskit.training.minder.alerts import Alert
from mlsyskit.training.minder.generator import FaultLabel

NO_FAULT = "none"


@dataclass(frozen=True)
class JobOutcome:
    """Matching result of one job (trace)."""

    fault_types: tuple[str, ...]
    true_positives: int
    false_negatives: int
    false_positives: int
    delays_s: tuple[float, ...]


def match_job(alerts: Sequence[Alert], faults: Sequence[FaultLabel],
              grace_s: float = 60.0) -> JobOutcome:
    """Apply the module's matching rule to one job's alerts and faults."""
    matched_fault: set[int] = set()
    delays: list[float] = []
    wrong: set[str] = set()
    for alert in sorted(alerts, key=lambda a: a.alert_time):
        hit = next(
            (i for i, f in enumerate(faults)
             if f.machine == alert.machine and f.start_s <= alert.alert_time <= f.end_s + grace_s),
            None,
        )
        if hit is None:
            wrong.add(alert.machine)
        elif hit not in matched_fault:
            matched_fault.add(hit)
            delays.append(alert.alert_time - faults[hit].start_s)
    return JobOutcome(
        fault_types=tuple(f.fault_type for f in faults) or (NO_FAULT,),
        true_positives=len(matched_fault),
        false_negatives=len(faults) - len(matched_fault),
        false_positives=len(wrong),
        delays_s=tuple(delays),
    )


@dataclass(frozen=True)
class Scores:
    """Precision, recall and F1 from counts (0 when undefined)."""

    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass(frozen=True)
class EvaluationReport:
    """Overall and per-fault-type scores plus detection delay."""

    overall: Scores
    by_type: dict[str, Scores] = field(default_factory=dict)
    mean_delay_s: float = float("nan")
    median_delay_s: float = float("nan")
    num_jobs: int = 0

    def as_dict(self) -> dict[str, object]:
        def one(s: Scores) -> dict[str, float]:
            return {"precision": s.precision, "recall": s.recall, "f1": s.f1,
                    "tp": s.tp, "fp": s.fp, "fn": s.fn}

        return {
            "overall": one(self.overall),
            "by_type": {k: one(v) for k, v in sorted(self.by_type.items())},
            "mean_delay_s": self.mean_delay_s,
            "median_delay_s": self.median_delay_s,
            "num_jobs": self.num_jobs,
        }


def summarise(outcomes: Sequence[JobOutcome]) -> EvaluationReport:
    """Add job outcomes up; per type, a job's false positives go to its (first) fault type."""
    tp = sum(o.true_positives for o in outcomes)
    fp = sum(o.false_positives for o in outcomes)
    fn = sum(o.false_negatives for o in outcomes)
    counts: dict[str, list[int]] = {}
    for o in outcomes:
        c = counts.setdefault(o.fault_types[0], [0, 0, 0])
        c[0] += o.true_positives
        c[1] += o.false_positives
        c[2] += o.false_negatives
    delays = [d for o in outcomes for d in o.delays_s]
    return EvaluationReport(
        overall=Scores(tp, fp, fn),
        by_type={k: Scores(*v) for k, v in counts.items()},
        mean_delay_s=float(np.mean(delays)) if delays else float("nan"),
        median_delay_s=float(np.median(delays)) if delays else float("nan"),
        num_jobs=len(outcomes),
    )


def read_faults(path: object) -> list[FaultLabel]:
    """Read ``faults.csv`` (``machine, fault_type, start, end``), validating every line."""
    from pathlib import Path

    p = Path(str(path))
    if not p.exists():
        raise DataError(f"{p}: no such file")
    df = pd.read_csv(p, dtype={"machine": str, "fault_type": str})
    missing = [c for c in ("machine", "fault_type", "start", "end") if c not in df.columns]
    if missing:
        raise DataError(f"{p}: missing column(s) {missing}; expected machine, fault_type, "
                        "start, end")
    labels = []
    for i, row in enumerate(df.to_dict("records")):
        try:
            start, end = float(row["start"]), float(row["end"])
        except (TypeError, ValueError) as exc:
            raise DataError(f"{p}, line {i + 2}: start/end must be numbers") from exc
        if not end >= start:
            raise DataError(f"{p}, line {i + 2}: end {end} is before start {start}")
        labels.append(FaultLabel(str(row["machine"]), str(row["fault_type"]), start, end))
    return labels
