from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from mlsyskit.cli import app

runner = CliRunner()


def test_plan_small_prints_plan_times_and_bubbles() -> None:
    result = runner.invoke(app, ["optimus", "plan", "small", "--fine-top-k", "1"])
    assert result.exit_code == 0, result.output
    assert "encoder plan" in result.output
    assert "Optimus (coarse + fine)" in result.output
    assert "TP" in result.output and "PP cool-down" in result.output


def test_gantt_writes_png(tmp_path: Path) -> None:
    out = tmp_path / "g.png"
    result = runner.invoke(app, ["optimus", "gantt", "small", "-o", str(out),
                                 "--fine-top-k", "1"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_bad_config_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "x.yaml"
    cfg.write_text("gpu: h100-sxm\n")
    result = runner.invoke(app, ["optimus", "plan", str(cfg)])
    assert result.exit_code == 2
    assert "num_gpus" in result.output


def test_run_cpu_help_lists_options() -> None:
    result = runner.invoke(app, ["optimus", "run-cpu", "--help"])
    assert result.exit_code == 0
    assert "--iterations" in result.output
