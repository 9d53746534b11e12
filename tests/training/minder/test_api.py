from __future__ import annotations

import mlsyskit.training.minder as minder


def test_public_api_is_pinned_and_resolves() -> None:
    assert set(minder.__all__) == {
        "METRICS", "Alert", "EvaluationReport", "FaultLabel", "FaultType", "FrameSource",
        "IntegratedScorer", "MetricFrame", "MetricSource", "Minder", "MinderError",
        "MinderScorer", "NotFittedError", "PassSchedule", "PrometheusSource", "ScoreSet",
        "Scorer", "TableSource", "TraceConfig", "align", "detect_frame", "detect_pass",
        "first_alert", "generate_set", "generate_trace", "match_job", "minmax_scale",
        "post_webhook", "read_faults", "read_table", "summarise", "watch", "write_jsonl",
    }
    for name in minder.__all__:
        assert getattr(minder, name) is not None
