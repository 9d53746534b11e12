from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from mlsyskit.cli import app
from mlsyskit.serving.server import free_port

runner = CliRunner()


def test_serve_run_rejects_bad_names_before_listening() -> None:
    result = runner.invoke(app, ["serve", "run", "--model", "nope"])
    assert result.exit_code == 2
    assert "unknown model 'nope'" in result.output and "serving" not in result.output
    result = runner.invoke(app, ["serve", "run", "--policy", "lifo"])
    assert result.exit_code == 2 and "lifo" in result.output
    result = runner.invoke(app, ["serve", "run", "--model", "llama-3.1-70b"])
    assert result.exit_code == 2 and "are for the" in result.output


@pytest.fixture
def cli_server(tmp_path: Path) -> Iterator[str]:
    """``mlsyskit serve run`` in a subprocess; always terminated."""
    port = free_port()
    log = (tmp_path / "server.log").open("wb")  # a file, so a full pipe can never block it
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlsyskit"), "serve", "run", "--model", "tiny",
         "--policy", "fcfs", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                out = (tmp_path / "server.log").read_text()
                raise AssertionError(f"server exited with {proc.returncode}: {out}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("server did not become healthy within 60 s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


def test_serve_run_serves_over_http(cli_server: str) -> None:
    r = httpx.post(f"{cli_server}/v1/completions", timeout=30, json={
        "model": "tiny", "prompt": "abc", "max_tokens": 4, "ignore_eos": True})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 4
    assert 'mlsyskit_generation_tokens_total{model="tiny"} 4.0' in httpx.get(
        f"{cli_server}/metrics", timeout=10).text
