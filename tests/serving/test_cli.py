from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from mlsyskit.cli import app

runner = CliRunner()


def test_bench_sim_writes_a_summary(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["serve", "bench", "--executor", "sim", "--num-requests", "40",
                                 "--rate", "2", "--policy", "sjf", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["summary"]["num_requests"] == 40 and data["policy"] == "sjf"
    assert "simulated clock" in result.output


def test_bench_torch_tiny_runs_for_real(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["serve", "bench", "--executor", "torch", "--model", "tiny",
                                 "--workload", f"trace:{_trace(tmp_path)}", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["requests"]
    assert sorted(r["num_output_tokens"] for r in rows) == [2, 3]


def _trace(tmp_path: Path) -> Path:
    path = tmp_path / "t.jsonl"
    path.write_text(
        '{"arrival_time": 0.0, "num_prompt_tokens": 5, "num_output_tokens": 3}\n'
        '{"arrival_time": 0.01, "num_prompt_tokens": 9, "num_output_tokens": 2}\n'
    )
    return path


def test_bad_inputs_exit_2_with_a_message(tmp_path: Path) -> None:
    bad = runner.invoke(app, ["serve", "bench", "--workload", "zipf"])
    assert bad.exit_code == 2 and "unknown workload 'zipf'" in bad.output
    trace = tmp_path / "bad.jsonl"
    trace.write_text("{}\n")
    bad = runner.invoke(app, ["serve", "bench", "--workload", f"trace:{trace}"])
    assert bad.exit_code == 2 and "bad.jsonl:1" in bad.output
    big = runner.invoke(app, ["serve", "bench", "--executor", "torch", "--model", "llama-3-8b"])
    assert big.exit_code == 2 and "use the simulated executor" in big.output
    assert runner.invoke(app, ["serve", "bench", "--policy", "lifo"]).exit_code == 2


def test_profile_fits_and_writes_constants(tmp_path: Path) -> None:
    out = tmp_path / "fit.json"
    result = runner.invoke(app, ["serve", "profile", "--model", "tiny", "--num-samples", "12",
                                 "--repeats", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["model"] == "tiny" and data["num_train"] == 9 and data["num_test"] == 3
    assert data["cost_params"]["overhead_s"] >= 0
