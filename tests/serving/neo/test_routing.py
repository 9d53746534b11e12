"""``--offload`` on ``serve bench`` and ``serve run``: routing to NEO's engines, and refusals."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mlsyskit.cli import app
from mlsyskit.errors import ConfigError
from mlsyskit.serving.neo import routing
from mlsyskit.serving.neo.scheduler import NeoScheduler, OffloadMode
from mlsyskit.serving.server import ServerConfig, build_app
from tests.serving.server.fakes import asgi_client

runner = CliRunner()


def _trace(tmp_path: Path, n: int = 6, prompt: int = 300, output: int = 20) -> Path:
    path = tmp_path / "t.jsonl"
    path.write_text("".join(
        json.dumps({"arrival_time": 0.05 * i, "num_prompt_tokens": prompt,
                    "num_output_tokens": output}) + "\n" for i in range(n)))
    return path


def test_bench_offload_neo_on_the_simulator_uses_the_host(tmp_path: Path) -> None:
    # T4 + Llama-2-7B with 54 device blocks (864 tokens, the paper's setting): 2 of 10
    # requests of 301-320 tokens fit, so NEO decodes the others on the host CPU (with 6,
    # a host queue of 4 is too short to pay, and NEO stays device-only)
    out = tmp_path / "r.json"
    result = runner.invoke(app, [
        "serve", "bench", "--offload", "neo", "--hardware", "t4", "--model", "llama-2-7b",
        "--host-cpu", "g4dn-4xlarge", "--num-device-blocks", "54",
        "--workload", f"trace:{_trace(tmp_path, 10)}", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["offload"] == "neo" and data["host_cpu"] == "g4dn-4xlarge"
    assert sorted(r["num_output_tokens"] for r in data["requests"]) == [20] * 10
    assert "offload neo" in result.output and "NEO:" in result.output
    line = next(ln for ln in result.output.splitlines() if ln.startswith("NEO:"))
    assert not line.startswith("NEO: 0 pipelined")  # the host pipeline ran


def test_bench_offload_none_is_the_device_only_baseline(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    result = runner.invoke(app, [
        "serve", "bench", "--offload", "none", "--host-cpu", "g5-16xlarge",
        "--workload", f"trace:{_trace(tmp_path)}", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["summary"]["num_requests"] == 6
    assert "NEO:" not in result.output  # the engine's own scheduler


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--offload", "neo"], "needs --host-cpu"),
        (["--offload", "neo", "--host-cpu", "g5-2xlarge", "--policy", "sjf"],
         "--policy sjf is for the plain engine"),
        (["--offload", "fastdecode", "--host-cpu", "g5-2xlarge", "--preemption", "recompute"],
         "preempts by swapping"),
        (["--offload", "neo", "--host-cpu", "g5-2xlarge", "--cost-params", "x.json"],
         "--cost-params"),
        (["--offload", "neo", "--host-cpu", "g5-2xlarge", "--workload", "augmented"],
         "API calls"),
        (["--offload", "neo", "--host-cpu", "nope"], "unknown cpu 'nope'"),
        (["--offload", "neo", "--executor", "torch", "--model", "tiny", "--tp", "2"],
         "--tp 2 is for the simulator"),
        (["--offload", "neo", "--executor", "torch", "--model", "tiny", "--host-cpu",
          "g5-2xlarge"], "--host-cpu is for the simulator"),
        (["--host-cpu", "g5-2xlarge"], "only used with --offload"),
    ],
)
def test_bench_refuses_unsupported_combinations(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["serve", "bench", "--num-requests", "4", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_bench_offload_neo_runs_the_real_executor(tmp_path: Path) -> None:
    # tiny model, 2 device blocks of 16: the second and third request go to the host pool
    result = runner.invoke(app, [
        "serve", "bench", "--offload", "neo", "--executor", "torch", "--model", "tiny",
        "--num-device-blocks", "2", "--workload", f"trace:{_trace(tmp_path, 3, 12, 5)}"])
    assert result.exit_code == 0, result.output
    assert "3 requests" in result.output and "NEO:" in result.output


def test_server_offload_neo_serves_the_same_text_as_the_plain_engine() -> None:
    # greedy decoding; NEO changes where attention runs, never the tokens
    texts = {}
    for offload in (None, "neo"):
        server = build_app(ServerConfig(model="tiny", policy="fcfs", offload=offload))

        async def main(server: Any = server) -> str:
            async with asgi_client(server) as client:
                r = await client.post("/v1/completions", json={
                    "model": "tiny", "prompt": "The quick brown fox", "max_tokens": 8,
                    "temperature": 0, "ignore_eos": True})
                assert r.status_code == 200, r.text
                return str(r.json()["choices"][0]["text"])

        texts[offload] = asyncio.run(main())
    assert texts["neo"] == texts[None]


def test_server_offload_refusals() -> None:
    with pytest.raises(ConfigError, match="--policy sjf"):
        build_app(ServerConfig(model="tiny", policy="sjf", offload="neo"))
    with pytest.raises(ConfigError, match="unknown offload mode 'gpu'"):
        build_app(ServerConfig(model="tiny", offload="gpu"))
    with pytest.raises(ConfigError, match="--checkpoint"):
        routing.build_offload_torch_engine(OffloadMode.NEO, model="tiny",
                                           checkpoint=Path("/nonexistent"))
    result = runner.invoke(app, ["serve", "run", "--offload", "neo", "--policy", "sjf"])
    assert result.exit_code == 2 and "--policy sjf" in result.output
    assert "serving" not in result.output  # refused before listening


def test_offload_torch_builder_makes_a_neo_engine() -> None:
    engine = routing.build_offload_torch_engine(OffloadMode.FASTDECODE, model="tiny",
                                                num_device_blocks=4, num_host_blocks=8)
    try:
        assert isinstance(engine.scheduler, NeoScheduler)
        assert engine.scheduler.neo.offload is OffloadMode.FASTDECODE
    finally:
        routing.close(engine)


def test_serve_default_passes_offload(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr("mlsyskit.serving.cli.serve_run", lambda **kw: calls.append(kw))
    result = runner.invoke(app, ["serve", "--model", "tiny", "--offload", "neo"])
    assert result.exit_code == 0, result.output
    assert calls[0]["offload"] is OffloadMode.NEO


def test_a_trace_with_api_calls_is_refused_before_serving() -> None:
    from mlsyskit.serving.request import ApiCall
    from mlsyskit.serving.workload import RequestSpec

    plain = RequestSpec("a", 0.0, 10, 5)
    calling = RequestSpec("b", 0.0, 10, 5, api_calls=(ApiCall(2, 0.5, 3),))
    routing.check_workload(OffloadMode.NEO, [plain])  # no API call: accepted
    routing.check_workload(OffloadMode.NONE, [plain, calling])  # device-only: accepted
    with pytest.raises(ConfigError, match="API calls"):
        routing.check_workload(OffloadMode.NEO, [plain, calling])
    with pytest.raises(ConfigError, match="augmented"):
        routing.check_workload_name(OffloadMode.FASTDECODE, "Augmented")
