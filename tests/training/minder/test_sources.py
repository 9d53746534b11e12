from __future__ import annotations

import logging

import httpx
import pandas as pd
import pytest

from mlsyskit.errors import DataError
from mlsyskit.training.minder.errors import MinderError
from mlsyskit.training.minder.sources import FrameSource, PrometheusSource


def _matrix(result: list[dict[str, object]]) -> dict[str, object]:
    return {"status": "success", "data": {"resultType": "matrix", "result": result}}


def test_query_range_becomes_a_long_table() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        q = request.url.params["query"]
        if q == "cpu":
            return httpx.Response(200, json=_matrix([
                {"metric": {"instance": "h1", "stage": "0"}, "values": [[10, "1.5"], [11, "2"]]},
                {"metric": {"instance": "h2", "stage": "1"}, "values": [[10, "NaN"]]},
            ]))
        return httpx.Response(200, json=_matrix([]))

    source = PrometheusSource("http://prom:9090/", {"cpu_usage": "cpu", "gpu": "gpu"},
                              group_label="stage", transport=httpx.MockTransport(handler))
    table = source.fetch(10, 20, 1)
    assert list(table["machine"]) == ["h1", "h1"]  # the NaN sample is dropped
    assert list(table["value"]) == [1.5, 2.0]
    assert set(table["metric"]) == {"cpu_usage"} and list(table["group"]) == ["0", "0"]
    assert seen[0].url.path == "/api/v1/query_range"
    assert seen[0].url.params["start"] == "10.000" and seen[0].url.params["step"] == "1"


def test_empty_query_is_skipped_with_warning_and_all_empty_is_an_error(
        caplog: pytest.LogCaptureFixture) -> None:
    source = PrometheusSource(
        "http://p", {"a": "a"},
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json=_matrix([]))))
    with caplog.at_level(logging.WARNING), pytest.raises(DataError, match="no samples"):
        source.fetch(0, 10)
    assert "returned no series; skipped" in caplog.text


def test_server_errors_are_minder_errors() -> None:
    bad = PrometheusSource("http://p", {"a": "rate(x["}, transport=httpx.MockTransport(
        lambda r: httpx.Response(400, json={"status": "error", "errorType": "bad_data",
                                            "error": "parse error"})))
    with pytest.raises(MinderError, match="parse error"):
        bad.fetch(0, 10)

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(MinderError, match="unreachable"):
        PrometheusSource("http://p", {"a": "a"}, transport=httpx.MockTransport(down)).fetch(0, 1)
    unlabelled = PrometheusSource("http://p", {"a": "a"}, transport=httpx.MockTransport(
        lambda r: httpx.Response(200, json=_matrix([{"metric": {}, "values": [[1, "1"]]}]))))
    with pytest.raises(MinderError, match="lacks the machine label"):
        unlabelled.fetch(0, 1)


def test_frame_source_filters_by_time() -> None:
    table = pd.DataFrame({"timestamp": [0, 5, 10], "machine": "a", "metric": "x",
                          "value": [1, 2, 3]})
    source = FrameSource(table)
    assert list(source.fetch(4, 10)["value"]) == [2.0, 3.0]
    with pytest.raises(DataError, match="no samples between"):
        source.fetch(20, 30)
