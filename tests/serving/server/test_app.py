from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import httpx

from mlsyskit.serving.model import ByteTokenizer
from mlsyskit.serving.server import ServedModel, create_app
from tests.serving.server.fakes import EOS, ScriptEngine, asgi_client, sse_payloads

TOK = ByteTokenizer()
# "hé" then "ok", with 'é' (0xC3 0xA9) split over two steps, then EOS
SCRIPT = [*b"h", 0xC3, 0xA9, *b"ok", EOS]


def run(engine: ScriptEngine, scenario: Callable[[httpx.AsyncClient], Awaitable[None]],
        max_model_len: int = 64) -> None:
    app = create_app(engine, ServedModel("fake", max_model_len, TOK), idle_wait_s=0.01)

    async def main() -> None:
        async with asgi_client(app) as client:
            await scenario(client)

    asyncio.run(main())


def test_completion_text_usage_and_finish_reason() -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        r = await client.post("/v1/completions",
                              json={"model": "fake", "prompt": "abc", "max_tokens": 10})
        assert r.status_code == 200
        body = r.json()
        assert body["object"] == "text_completion"
        assert body["choices"][0]["text"] == "héok"
        assert body["choices"][0]["finish_reason"] == "stop"
        assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9}
        r = await client.post("/v1/completions",
                              json={"model": "fake", "prompt": [1, 2], "max_tokens": 2})
        assert r.json()["choices"][0] | {"text": None} == {
            "index": 0, "text": None, "logprobs": None, "finish_reason": "length"}
        assert r.json()["choices"][0]["text"] == "h\ufffd"  # cut inside 'é' by max_tokens

    run(ScriptEngine(SCRIPT), scenario)


def test_streaming_never_splits_a_character_and_ends_with_done() -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        r = await client.post("/v1/completions", json={
            "model": "fake", "prompt": "x", "max_tokens": 10, "stream": True,
            "stream_options": {"include_usage": True}})
        assert r.headers["content-type"].startswith("text/event-stream")
        payloads = sse_payloads(r.text)
        assert payloads[-1] == "[DONE]"
        chunks = [json.loads(p) for p in payloads[:-1]]
        texts = [c["choices"][0]["text"] for c in chunks if c["choices"]]
        assert texts == ["h", "é", "o", "k", ""]
        assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
        assert chunks[-1]["choices"] == []
        assert chunks[-1]["usage"]["completion_tokens"] == 6  # the EOS token counts

    run(ScriptEngine(SCRIPT), scenario)


def test_chat_streaming_and_not_agree_and_use_the_template() -> None:
    engine = ScriptEngine(SCRIPT)
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]

    async def scenario(client: httpx.AsyncClient) -> None:
        plain = (await client.post("/v1/chat/completions",
                                   json={"model": "fake", "messages": messages})).json()
        assert plain["choices"][0]["message"] == {"role": "assistant", "content": "héok"}
        prompt = "<|system|>\nbe brief\n<|user|>\nhi\n<|assistant|>\n"
        assert plain["usage"]["prompt_tokens"] == len(prompt.encode())
        r = await client.post("/v1/chat/completions",
                              json={"model": "fake", "messages": messages, "stream": True})
        chunks = [json.loads(p) for p in sse_payloads(r.text)[:-1]]
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        text = "".join(c["choices"][0]["delta"]["content"] or "" for c in chunks)
        assert text == "héok" and chunks[-1]["choices"][0]["finish_reason"] == "stop"

    run(engine, scenario)


def test_stop_string_cuts_text_and_aborts_the_request() -> None:
    engine = ScriptEngine([*b"abcSTOPdef"])

    async def scenario(client: httpx.AsyncClient) -> None:
        r = await client.post("/v1/completions", json={
            "model": "fake", "prompt": "p", "max_tokens": 9, "stop": ["STOP"], "stream": True})
        chunks = [json.loads(p) for p in sse_payloads(r.text)[:-1]]
        assert "".join(c["choices"][0]["text"] for c in chunks) == "abc"
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop"

    run(engine, scenario)
    assert len(engine.aborted) == 1 and not engine.requests


def test_client_errors_are_400_and_the_server_keeps_serving() -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        cases = [
            (b"{not json", "malformed JSON body"),
            (json.dumps({"model": "gpt-4", "prompt": "a"}).encode(), "unknown model 'gpt-4'"),
            (json.dumps({"model": "fake", "prompt": "a" * 60, "max_tokens": 8}).encode(),
             "maximum context length is 64 tokens, but the request needs 68"),
            (json.dumps({"model": "fake", "prompt": "a" * 64}).encode(),
             "maximum context length is 64"),
            (json.dumps({"model": "fake", "prompt": "a", "n": 2}).encode(), "only n=1"),
            (json.dumps({"model": "fake", "prompt": [5, 999]}).encode(),
             "prompt token ids [999] are outside the vocabulary"),
            (json.dumps({"model": "fake", "prompt": "a", "max_tokens": "x"}).encode(),
             "invalid request: max_tokens"),
            (json.dumps({"model": "fake", "prompt": "a" * 20}).encode(),
             "needs more KV blocks than the engine has"),
        ]
        for body, message in cases:
            r = await client.post("/v1/completions", content=body,
                                  headers={"content-type": "application/json"})
            assert r.status_code == 400, (body, r.text)
            assert message in r.json()["error"]["message"], r.text
            assert r.json()["error"]["type"] == "invalid_request_error"
        r = await client.post("/v1/chat/completions", json={"model": "fake", "messages": []})
        assert r.status_code == 400
        r = await client.post("/v1/completions", json={"model": "fake", "prompt": "ok"})
        assert r.status_code == 200 and r.json()["choices"][0]["text"] == "héok"
        metrics = (await client.get("/metrics")).text
        assert 'mlsyskit_http_requests_rejected_total{endpoint="/v1/completions"} 8.0' in metrics

    run(ScriptEngine(SCRIPT, max_prompt=16), scenario)


def test_models_health_and_metrics_values() -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        models = (await client.get("/v1/models")).json()
        assert [m["id"] for m in models["data"]] == ["fake"]
        assert models["data"][0]["max_model_len"] == 64
        assert (await client.get("/health")).json() == {"status": "ok", "model": "fake"}
        for _ in range(2):
            await client.post("/v1/completions", json={"model": "fake", "prompt": "abcd"})
        r = await client.get("/metrics")
        assert r.headers["content-type"].startswith("text/plain")
        lines = set(r.text.splitlines())
        for line in (
            'mlsyskit_prompt_tokens_total{model="fake"} 8.0',
            'mlsyskit_generation_tokens_total{model="fake"} 12.0',
            'mlsyskit_engine_requests_finished_total{model="fake"} 2.0',
            'mlsyskit_num_requests_running{model="fake"} 0.0',
            'mlsyskit_kv_device_blocks_total{model="fake"} 8.0',
            'mlsyskit_requests_finished_total{finish_reason="stop",model="fake"} 2.0',
            'mlsyskit_http_requests_total{endpoint="completions",model="fake"} 2.0',
            'mlsyskit_time_to_first_token_seconds_count{model="fake"} 2.0',
            'mlsyskit_e2e_request_latency_seconds_count{model="fake"} 2.0',
        ):
            assert line in lines, line

    run(ScriptEngine(SCRIPT), scenario)


def test_engine_failure_gives_503_not_a_hang() -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        r = await client.post("/v1/completions", json={"model": "fake", "prompt": "a"})
        assert r.status_code == 503 and "injected executor failure" in r.text
        assert (await client.get("/health")).status_code == 503
        r = await client.post("/v1/completions", json={"model": "fake", "prompt": "a"})
        assert r.status_code == 503 and "engine is not running" in r.text

    run(ScriptEngine(SCRIPT, fail_after_steps=0), scenario)


def test_concurrent_requests_each_get_their_own_tokens() -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        bodies = [{"model": "fake", "prompt": "a" * (i + 1), "max_tokens": i + 1}
                  for i in range(5)]
        results = await asyncio.gather(*(client.post("/v1/completions", json=b)
                                         for b in bodies))
        usages = [r.json()["usage"] for r in results]
        assert [u["prompt_tokens"] for u in usages] == [1, 2, 3, 4, 5]
        assert [u["completion_tokens"] for u in usages] == [1, 2, 3, 4, 5]

    run(ScriptEngine([*b"abcdef"]), scenario)
