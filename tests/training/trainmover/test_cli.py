"""The ``mlsyskit trainmover`` commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlsyskit.cli import app
from mlsyskit.errors import ConfigError
from mlsyskit.training.trainmover.cli import _training_args

runner = CliRunner()


def test_help_lists_the_verbs() -> None:
    result = runner.invoke(app, ["trainmover", "--help"])
    assert result.exit_code == 0
    for verb in ("run", "migrate", "kill", "status", "rebalance"):
        assert verb in result.output


def test_training_args_after_the_double_dash() -> None:
    parsed = _training_args(["--steps", "7", "--hidden", "16", "--step-delay", "0"])
    assert parsed["steps"] == 7 and parsed["hidden"] == 16 and parsed["step_delay_s"] == 0.0
    with pytest.raises(ConfigError, match="unknown training arguments"):
        _training_args(["--epochs", "3"])


def test_verbs_without_a_running_job_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["trainmover", "status", "--run-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "no running job" in result.output


@pytest.mark.slow
def test_run_migrate_kill_status_end_to_end(tmp_path: Path) -> None:
    cmd = [
        str(Path(sys.executable).parent / "mlsyskit"), "trainmover", "run", "--workers", "2",
        "--standby", "2", "--run-dir", str(tmp_path), "--", "--steps", "2000", "--hidden", "32",
        "--step-delay", "0.02",
    ]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while True:
            result = runner.invoke(app, ["trainmover", "status", "--run-dir", str(tmp_path)])
            if result.exit_code == 0 and min(json.loads(result.output)["progress"].values()) > 5:
                break
            assert time.time() < deadline, result.output
            time.sleep(0.5)
        moved = runner.invoke(
            app, ["trainmover", "migrate", "--rank", "1", "--run-dir", str(tmp_path)]
        )
        assert moved.exit_code == 0, moved.output
        assert json.loads(moved.output)["result"]["rank"] == 1
        killed = runner.invoke(
            app, ["trainmover", "kill", "--rank", "0", "--run-dir", str(tmp_path)]
        )
        assert killed.exit_code == 0 and "w0" in killed.output
        while True:
            status = json.loads(
                runner.invoke(app, ["trainmover", "status", "--run-dir", str(tmp_path)]).output
            )
            if "w0" not in status["members"]:
                break
            assert time.time() < deadline
            time.sleep(0.5)
        assert status["generation"] == 2  # one move, one recovery
    finally:
        server.terminate()  # the controller stops its workers on SIGTERM
        server.wait(timeout=60)
        for pid_file in (tmp_path / "pids").glob("*"):  # safety net: nothing may outlive us
            pid = int(pid_file.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline")
            if cmdline.exists() and b"trainmover.worker" in cmdline.read_bytes():
                os.kill(pid, signal.SIGKILL)
