from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from mlsyskit.cli import app

runner = CliRunner()


def _flat(text: str) -> str:
    """Rich wraps long lines; compare on single spaces."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gen")
    result = runner.invoke(app, ["minder", "generate", "--out", str(out), "--machines", "4",
                                 "--faults", "2", "--fault-free", "1", "--duration-s", "420",
                                 "--seed", "3", "--format", "csv"])
    assert result.exit_code == 0, result.output
    return out


def test_generate_writes_metrics_and_labels(generated: Path) -> None:
    metrics = pd.read_csv(generated / "metrics.csv")
    faults = pd.read_csv(generated / "faults.csv")
    assert set(metrics.columns) >= {"timestamp", "machine", "metric", "value", "group", "job"}
    assert metrics["job"].nunique() == 3 and metrics["machine"].nunique() == 12
    assert list(faults.columns[:4]) == ["machine", "fault_type", "start", "end"]
    assert len(faults) == 2 and set(faults["machine"]) <= set(metrics["machine"])


def test_train_detect_evaluate(generated: Path, tmp_path: Path) -> None:
    model = tmp_path / "m.pt"
    trained = runner.invoke(app, ["minder", "train", "--metrics", str(generated / "metrics.csv"),
                                  "--faults", str(generated / "faults.csv"),
                                  "--model", str(model)])
    assert trained.exit_code == 0, trained.output
    assert model.exists() and "metric order" in _flat(trained.output)
    alerts = tmp_path / "alerts.jsonl"
    detected = runner.invoke(app, ["minder", "detect", "--metrics", str(generated / "metrics.csv"),
                                   "--model", str(model), "--out", str(alerts),
                                   "--continuity-s", "60"])
    assert detected.exit_code == 0, detected.output
    for line in alerts.read_text().splitlines():
        alert = json.loads(line)
        assert set(alert) == {"machine", "metric", "first_seen", "alert_time", "score", "job"}
        assert alert["alert_time"] - alert["first_seen"] == 60
    report = tmp_path / "r.json"
    evaluated = runner.invoke(app, ["minder", "evaluate", "--metrics",
                                    str(generated / "metrics.csv"), "--faults",
                                    str(generated / "faults.csv"), "--model", str(model),
                                    "--continuity-s", "60", "--json", str(report)])
    assert evaluated.exit_code == 0, evaluated.output
    assert "overall" in evaluated.output and "detection delay" in _flat(evaluated.output)
    data = json.loads(report.read_text())
    assert data["num_jobs"] == 3
    tp, fn = data["overall"]["tp"], data["overall"]["fn"]
    assert tp + fn == 2


def test_bad_input_exits_2_with_a_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,machine,metric\n0,a,x\n")
    result = runner.invoke(app, ["minder", "detect", "--metrics", str(bad)])
    assert result.exit_code == 2
    assert "missing column" in _flat(result.output)
    missing = runner.invoke(app, ["minder", "detect", "--metrics", str(tmp_path / "no.csv")])
    assert missing.exit_code == 2 and "no such file" in _flat(missing.output)
    query = runner.invoke(app, ["minder", "watch", "--prometheus", "http://127.0.0.1:9",
                                "--query", "nonsense"])
    assert query.exit_code == 2 and "METRIC=PROMQL" in _flat(query.output)


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["minder", "--help"])
    assert result.exit_code == 0
    for command in ("generate", "train", "detect", "evaluate", "watch", "lab"):
        assert command in result.output


def test_lab_rejects_bad_options_before_starting_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    import mlsyskit.training.minder.lab as lab

    def no_lab(*args: object, **kwargs: object) -> None:
        raise AssertionError("the lab must not start on bad options")

    monkeypatch.setattr(lab, "run_lab", no_lab)
    unknown = runner.invoke(app, ["minder", "lab", "--fault", "melt"])
    assert unknown.exit_code == 2 and "melt" in _flat(unknown.output)
    hogs = runner.invoke(app, ["minder", "lab", "--fault", "hog", "--hogs", "0"])
    assert hogs.exit_code == 2 and "num_hogs must be in [1, 16]; got 0" in _flat(hogs.output)
    victim = runner.invoke(app, ["minder", "lab", "--workers", "2", "--victim", "2"])
    assert victim.exit_code == 2 and "victim must be a worker rank below 2" in _flat(
        victim.output)


def test_lab_passes_every_fault_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    import mlsyskit.training.minder.lab as lab
    from mlsyskit.training.minder.lab_faults import LabFault

    seen: list[lab.LabConfig] = []

    def fake_lab(config: lab.LabConfig) -> lab.LabReport:
        seen.append(config)
        return lab.LabReport((), "nothing ran")

    monkeypatch.setattr(lab, "run_lab", fake_lab)
    result = runner.invoke(app, ["minder", "lab", "--fault", "hog", "--fault", "slow",
                                 "--hogs", "5", "--victim", "2"])
    assert result.exit_code == 0, result.output
    assert seen[0].faults == (LabFault.hog, LabFault.slow)
    assert (seen[0].num_hogs, seen[0].victim, seen[0].num_workers) == (5, 2, 4)
