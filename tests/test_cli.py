from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import mlsyskit
from mlsyskit import systems
from mlsyskit.cli import app
from mlsyskit.hardware import use_hardware_files
from mlsyskit.results import BenchResult, DemoResult
from mlsyskit.systems import SYSTEMS, SystemInfo

runner = CliRunner()


@pytest.fixture(autouse=True)
def _reset_hardware() -> None:
    use_hardware_files([])


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert mlsyskit.__version__ in result.output


@pytest.mark.parametrize(
    "args", [[], ["hardware"], ["reproduce", "--help"], ["demo", "--help"]]
)
def test_help_everywhere(args: list[str]) -> None:
    result = runner.invoke(app, [*args, "--help"] if args else ["--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_hardware_list_and_show() -> None:
    listed = runner.invoke(app, ["hardware", "list", "--kind", "gpu"])
    assert listed.exit_code == 0
    assert "h200" in listed.output and "agilio" not in listed.output
    shown = runner.invoke(app, ["hardware", "show", "t4"])
    assert shown.exit_code == 0
    assert "datasheet" in shown.output


def test_hardware_unknown_name_exits_2_with_known_names() -> None:
    result = runner.invoke(app, ["hardware", "show", "v100"])
    assert result.exit_code == 2
    assert "unknown device 'v100'" in result.output and "t4" in result.output


def test_bad_hardware_file_exits_2_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[gpu.x]\ndisplay_name = "x"\nmemory_gib = "lots"\n')
    result = runner.invoke(app, ["--hardware", str(bad), "hardware", "list"])
    assert result.exit_code == 2
    assert "memory_gib" in result.output


def test_user_hardware_file_is_listed(tmp_path: Path) -> None:
    mine = tmp_path / "mine.toml"
    mine.write_text(
        '[link.my-link]\ndisplay_name = "Mine"\nbandwidth_gbs = 7\nlatency_us = 3\n'
        '[link.my-link.sources]\nbandwidth_gbs = "me"\nlatency_us = "me"\n'
    )
    result = runner.invoke(app, ["--hardware", str(mine), "hardware", "show", "my-link"])
    assert result.exit_code == 0, result.output
    assert "Mine" in result.output


def test_unknown_system_exits_2_and_lists_known() -> None:
    result = runner.invoke(app, ["reproduce", "nosuch", "--quick"])
    assert result.exit_code == 2
    for name in ("neo", "lamps", "trail", "minder", "trainmover", "optimus", "fielding",
                 "netflowgen", "cora"):
        assert name in result.output


# A fake system registered for the duration of a test, to check the reproduce contract
# without running any real benchmark.
def fake_reproduce(quick: bool, out_dir: Path) -> BenchResult:
    return BenchResult(
        metrics={"speedup": 2.5, "err": 0.3},
        paper={"speedup": 2.0},
        targets={"speedup": ">= 2", "err": "<= 0.15"},
        simulated=["speedup"],
        notes=[f"quick={quick}"],
    )


def failing_reproduce(quick: bool, out_dir: Path) -> BenchResult:
    raise RuntimeError("boom")


def fake_demo(out_dir: Path) -> DemoResult:
    from mlsyskit.report.plotting import new_figure, save_figure

    fig = new_figure()
    fig.add_subplot().plot([0, 1], [1, 2])
    plot = save_figure(fig, out_dir / "fake.png")
    return DemoResult(summary="fake demo ran", metrics={"x": 1.0}, paper={"x": 1.1}, plots=[plot])


@pytest.fixture
def fake_system(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = (
        SystemInfo("fake", "Fake", "test", "a fake", "none",
                   reproduce_entry="tests.test_cli:fake_reproduce",
                   demo_entry="tests.test_cli:fake_demo"),
        SystemInfo("broken", "Broken", "test", "a broken one", "none",
                   reproduce_entry="tests.test_cli:failing_reproduce"),
    )
    monkeypatch.setattr(systems, "SYSTEMS", SYSTEMS + extra)
    monkeypatch.setattr("mlsyskit.cli.SYSTEMS", SYSTEMS + extra)


@pytest.mark.usefixtures("fake_system")
def test_reproduce_writes_the_contract_json(tmp_path: Path) -> None:
    result = runner.invoke(app, ["reproduce", "fake", "--quick", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "fake.json").read_text())
    assert doc["system"] == "fake" and doc["quick"] is True
    assert doc["metrics"] == {"speedup": 2.5, "err": 0.3}
    assert doc["paper"] == {"speedup": 2.0}
    assert doc["simulated"] == ["speedup"]
    assert doc["target_met"] == {"speedup": True, "err": False}
    assert doc["environment"]["python"]
    assert "speedup" in result.output


@pytest.mark.usefixtures("fake_system")
def test_failed_benchmark_exits_nonzero_and_keeps_old_result(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text('{"old": true}')
    result = runner.invoke(app, ["reproduce", "broken", "--quick", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "boom" in result.output
    assert json.loads((tmp_path / "broken.json").read_text()) == {"old": True}


def test_unbuilt_system_is_reported_not_faked(tmp_path: Path) -> None:
    unbuilt = [s for s in SYSTEMS if s.reproduce_entry is None]
    if not unbuilt:
        pytest.skip("every system has a benchmark")
    result = runner.invoke(app, ["reproduce", unbuilt[0].name, "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "not implemented" in result.output
    assert not (tmp_path / f"{unbuilt[0].name}.json").exists()


@pytest.mark.usefixtures("fake_system")
def test_demo_writes_report_listing_every_system(tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = runner.invoke(app, ["demo", "--out", str(out), "--only", "fake", "--only", "neo",
                                 "--only", "cora"])
    assert result.exit_code == 0, result.output
    html = (out / "index.html").read_text()
    md = (out / "summary.md").read_text()
    assert "fake demo ran" in html and "fake/fake.png" in html
    assert (out / "fake" / "fake.png").exists()
    assert "Hardware catalogue" in md and "h100-sxm" in md
    for info in SYSTEMS:
        if info.name in ("neo", "cora") and info.demo_entry is None:
            assert "Not implemented yet" in md


def test_cli_start_up_imports_no_heavy_library() -> None:
    """`mlsyskit --help` must stay fast: torch, FastAPI, Flower and sklearn load on use only."""
    import subprocess
    import sys

    code = (
        "import sys, mlsyskit.cli; "
        "print(sorted(m for m in ('torch', 'fastapi', 'flwr', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
