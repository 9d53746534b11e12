from __future__ import annotations

import time

import httpx

from mlsyskit.serving.model import ByteTokenizer
from mlsyskit.serving.server import ServedModel, create_app, serve_in_thread
from tests.serving.server.fakes import ScriptEngine


def test_client_that_leaves_mid_stream_aborts_its_request() -> None:
    engine = ScriptEngine([*b"abcdefgh"], step_sleep_s=0.01)
    app = create_app(engine, ServedModel("fake", 4096, ByteTokenizer()), idle_wait_s=0.01)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        body = {"model": "fake", "prompt": "x", "max_tokens": 4000, "stream": True,
                "ignore_eos": True}
        with client.stream("POST", "/v1/completions", json=body) as response:
            assert response.status_code == 200
            first = next(response.iter_lines())
            assert first.startswith("data: ")
        deadline = time.monotonic() + 10
        while not engine.aborted and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(engine.aborted) == 1 and not engine.has_unfinished()
        assert engine.num_generated < 4000  # stopped long before max_tokens
        ok = client.post("/v1/completions", json={"model": "fake", "prompt": "y",
                                                  "max_tokens": 3})
        assert ok.json()["choices"][0]["text"] == "abc"
