from __future__ import annotations

import io
import json

import httpx
import pytest

from mlsyskit.training.minder.alerts import Alert, post_webhook, write_jsonl
from mlsyskit.training.minder.errors import MinderError

ALERT = Alert("m3", "pfc_tx_rate", 100.0, 340.0, 0.42, job="j1")


def test_jsonl_has_the_issue_fields() -> None:
    out = io.StringIO()
    write_jsonl([ALERT, ALERT], out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert json.loads(lines[0]) == {"machine": "m3", "metric": "pfc_tx_rate", "first_seen": 100.0,
                                    "alert_time": 340.0, "score": 0.42, "job": "j1"}


def test_webhook_posts_json_and_fails_loudly() -> None:
    got: list[dict[str, object]] = []

    def ok(request: httpx.Request) -> httpx.Response:
        got.append(json.loads(request.content))
        return httpx.Response(204)

    post_webhook([ALERT], "http://hook/x", transport=httpx.MockTransport(ok))
    assert got[0]["machine"] == "m3"
    with pytest.raises(MinderError, match="cannot deliver"):
        post_webhook([ALERT], "http://hook/x",
                     transport=httpx.MockTransport(lambda r: httpx.Response(500)))
