"""Minder: detect the faulty machine of a distributed training job from its monitoring metrics.

Pipeline (NSDI '25, Deng et al.): align and min-max scale per-second metrics, denoise every
metric's sliding windows with its own small LSTM-VAE, score each machine by its distance from
its peers, alert when the same machine stays above a calibrated threshold for the continuity
duration, trying metrics in a decision-tree-learned priority order.

The public API is importable without torch; the model code imports it when used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "Alert": "alerts", "post_webhook": "alerts", "write_jsonl": "alerts",
    "detect_pass": "continuity", "first_alert": "continuity",
    "Minder": "detector",
    "MinderError": "errors", "NotFittedError": "errors",
    "EvaluationReport": "evaluate", "match_job": "evaluate", "read_faults": "evaluate",
    "summarise": "evaluate",
    "MetricFrame": "frame", "align": "frame", "minmax_scale": "frame", "read_table": "frame",
    "METRICS": "generator", "FaultLabel": "generator", "FaultType": "generator",
    "TraceConfig": "generator", "generate_set": "generator", "generate_trace": "generator",
    "PassSchedule": "pipeline", "detect_frame": "pipeline", "watch": "pipeline",
    "IntegratedScorer": "scorers", "MinderScorer": "scorers", "Scorer": "scorers",
    "ScoreSet": "scorers",
    "FrameSource": "sources", "MetricSource": "sources", "PrometheusSource": "sources",
    "TableSource": "sources",
}


def __getattr__(name: str) -> Any:
    # Lazy exports: the CLI imports this package, and `mlsyskit --help` must not pay for
    # pandas / scipy / torch.
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "METRICS",
    "Alert",
    "EvaluationReport",
    "FaultLabel",
    "FaultType",
    "FrameSource",
    "IntegratedScorer",
    "MetricFrame",
    "MetricSource",
    "Minder",
    "MinderError",
    "MinderScorer",
    "NotFittedError",
    "PassSchedule",
    "PrometheusSource",
    "ScoreSet",
    "Scorer",
    "TableSource",
    "TraceConfig",
    "align",
    "detect_frame",
    "detect_pass",
    "first_alert",
    "generate_set",
    "generate_trace",
    "match_job",
    "minmax_scale",
    "post_webhook",
    "read_faults",
    "read_table",
    "summarise",
    "watch",
    "write_jsonl",
]
