from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlsyskit.errors import BenchmarkError
from mlsyskit.serving.metrics import (
    RequestMetrics,
    plot_latency_vs_load,
    summarize,
    write_metrics_json,
)


def test_per_request_and_summary_metrics_by_hand(tmp_path: Path) -> None:
    a = RequestMetrics("a", 0.0, 0.5, 2.5, 10, 5)  # ttft .5, latency 2.5, tpot 2/4 = .5
    b = RequestMetrics("b", 1.0, 1.2, 2.0, 10, 1)  # ttft .2, latency 1.0, tpot 0
    assert (a.ttft_s, a.latency_s, a.tpot_s, a.normalized_latency_s) == (0.5, 2.5, 0.5, 0.5)
    assert (b.tpot_s, b.normalized_latency_s) == (0.0, 1.0)
    s = summarize([a, b])
    assert s.duration_s == 2.5 and s.requests_per_s == pytest.approx(0.8)
    assert s.output_tokens_per_s == pytest.approx(6 / 2.5)
    assert s.ttft_s.mean == pytest.approx(0.35) and s.ttft_s.p50 == pytest.approx(0.35)
    assert s.latency_s.p99 == pytest.approx(1.0 + 0.99 * 1.5)
    path = tmp_path / "m.json"
    write_metrics_json(path, s, [a, b], rate=2.0)
    data = json.loads(path.read_text())
    assert data["rate"] == 2.0 and data["requests"][0]["latency_s"] == 2.5
    png = plot_latency_vs_load({"x": [(1.0, s), (2.0, s)]}, tmp_path / "p.png")
    assert png.stat().st_size > 1000
    with pytest.raises(BenchmarkError):
        summarize([])
