from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from mlsyskit.cli import app

runner = CliRunner()


def test_run_prints_the_summary_and_writes_the_curve(tmp_path: Path) -> None:
    out = tmp_path / "curve.json"
    result = runner.invoke(app, [
        "fielding", "run", "--scenario", "digits", "--strategy", "fielding", "--clients", "10",
        "--rounds", "4", "--per-round", "4", "--out", str(out),
    ])
    assert result.exit_code == 0, result.output
    assert "digits: fielding" in result.output
    curve = json.loads(out.read_text())
    assert curve["rounds"] == [1, 2, 3, 4] and len(curve["accuracy"]) == 4
    assert curve["final_accuracy"] == curve["accuracy"][-1]  # last 10% of 4 rounds = 1 round


def test_compare_runs_every_strategy(tmp_path: Path) -> None:
    result = runner.invoke(app, [
        "fielding", "compare", "--scenario", "digits", "--clients", "8", "--rounds", "2",
        "--per-round", "3", "--out", str(tmp_path),
    ])
    assert result.exit_code == 0, result.output
    curves = json.loads((tmp_path / "curves.json").read_text())
    assert [c["strategy"] for c in curves] == [
        "fielding", "fedavg", "ifca", "ifca_last_identity", "cluster_once", "moves_only",
        "global_every_drift", "feddrift", "oracle",
    ]
    assert (tmp_path / "compare.png").stat().st_size > 0


def test_bad_inputs_exit_2_with_a_message() -> None:
    bad = runner.invoke(app, ["fielding", "run", "--malicious", "1.5"])
    assert bad.exit_code == 2 and "--malicious must be in [0, 1)" in bad.output
    unknown = runner.invoke(app, ["fielding", "run", "--strategy", "nope"])
    assert unknown.exit_code == 2
    both = runner.invoke(app, ["fielding", "run", "--features", "--class-features"])
    assert both.exit_code == 2 and "one of --features and --class-features" in both.output
