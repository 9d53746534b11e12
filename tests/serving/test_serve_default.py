"""`mlsyskit serve --model M ...` without a subcommand runs the HTTP server."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from mlsyskit.cli import app

runner = CliRunner()


def test_serve_without_subcommand_runs_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr("mlsyskit.serving.cli.serve_run", lambda **kw: calls.append(kw))
    result = runner.invoke(app, ["serve", "--model", "tiny", "--policy", "sjf", "--port", "8123"])
    assert result.exit_code == 0, result.output
    assert len(calls) == 1
    assert calls[0]["model"] == "tiny" and calls[0]["port"] == 8123
    assert calls[0]["policy"].value == "sjf"


def test_serve_with_a_subcommand_does_not_start_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr("mlsyskit.serving.cli.serve_run", lambda **kw: calls.append(kw))
    result = runner.invoke(app, ["serve", "bench", "--help"])
    assert result.exit_code == 0
    assert calls == []


def test_serve_unknown_model_exits_2_before_listening() -> None:
    result = runner.invoke(app, ["serve", "--model", "nosuch"])
    assert result.exit_code == 2
    assert "unknown model 'nosuch'" in result.output
