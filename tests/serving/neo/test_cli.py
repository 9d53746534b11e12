"""``mlsyskit serve neo ...`` in-process."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlsyskit.cli import app

runner = CliRunner()


def test_setups_lists_every_paper_setup() -> None:
    result = runner.invoke(app, ["serve", "neo", "setups"])
    assert result.exit_code == 0, result.output
    for name in ("t4-7b", "a10g-8b-2", "a10g-8b-16", "h100x2-70b"):
        assert name in result.output


def test_bench_offload_choices_on_the_simulator() -> None:
    for offload in ("neo", "none", "fastdecode", "fixed-ratio"):
        result = runner.invoke(app, ["serve", "neo", "bench", "--offload", offload,
                                     "--num-requests", "12", "--rate", "inf"])
        assert result.exit_code == 0, result.output
        assert "12 requests at offline" in result.output
        assert ("pipelined" in result.output) == (offload != "none")


def test_bench_rejects_an_unknown_setup() -> None:
    result = runner.invoke(app, ["serve", "neo", "bench", "--setup", "t5", "--num-requests", "2"])
    assert result.exit_code == 2
    assert "t4-7b" in result.output


def test_bench_paper_rules_pipeline_where_the_defaults_fall_back() -> None:
    # A10G g5.16xlarge, 40 offline requests of ~1000/50 tokens: the device holds ~26, the rest
    # wait. The paper's throughput rule pipelines some steps; the latency-aware defaults run
    # device-only (a pipelined step would grow the iteration more than the throughput).
    args = ["serve", "neo", "bench", "--offload", "neo", "--setup", "a10g-8b-16", "--workload",
            "synthetic", "--output-len", "50", "--rate", "inf", "--num-requests", "40"]
    default = runner.invoke(app, args)
    paper = runner.invoke(app, [*args, "--paper-rules"])
    assert default.exit_code == 0 and paper.exit_code == 0, default.output + paper.output
    assert "steps: 0 pipelined" in default.output and "0 on the host" in default.output
    assert "steps: 0 pipelined" not in paper.output


def test_bench_device_only_options_reach_the_engine_and_are_refused_elsewhere() -> None:
    args = ["serve", "neo", "bench", "--num-requests", "12", "--rate", "inf"]
    ok = runner.invoke(app, [*args, "--offload", "none", "--chunk-tokens", "256", "--recompute"])
    assert ok.exit_code == 0, ok.output
    assert "12 requests at offline" in ok.output
    for bad, names in (
        (["--offload", "neo", "--chunk-tokens", "256"], "not neo"),
        (["--offload", "none", "--executor", "torch", "--recompute"], "--executor sim only"),
    ):
        result = runner.invoke(app, [*args, *bad])
        assert result.exit_code != 0
        assert names in result.output


def test_sweep_with_baselines_reports_every_system(tmp_path: Path) -> None:
    out = tmp_path / "sweep.png"
    result = runner.invoke(app, ["serve", "neo", "sweep", "--num-requests", "20", "--baselines",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    for name in ("none", "neo", "vllm-256", "vllm-512", "recompute"):
        assert f"{name}: sustainable" in result.output
    assert out.stat().st_size > 0


def test_sweep_paper_rules_and_bound_factor(tmp_path: Path) -> None:
    out = tmp_path / "sweep.png"
    args = ["serve", "neo", "sweep", "--num-requests", "20", "--out", str(out)]
    result = runner.invoke(app, [*args, "--paper-rules", "--bound-factor", "3"])
    assert result.exit_code == 0, result.output
    assert "neo-paper: sustainable" in result.output
    assert "none: sustainable" in result.output and "(1.000x device-only)" in result.output
    for value in ("1", "nan", "inf"):
        bad = runner.invoke(app, [*args, "--bound-factor", value])
        assert bad.exit_code == 2 and "--bound-factor must be a finite number > 1" in bad.output
    bad_slo = runner.invoke(app, [*args, "--step-slo-ms", "inf"])
    assert bad_slo.exit_code == 2 and "--step-slo-ms must be a finite" in bad_slo.output
    slo = runner.invoke(app, [*args, "--step-slo-ms", "500"])
    assert slo.exit_code == 0, slo.output
    assert "neo-slo: sustainable" in slo.output


def test_bench_step_slo_conflicts_are_refused() -> None:
    args = ["serve", "neo", "bench", "--num-requests", "5", "--step-slo-ms", "50"]
    both = runner.invoke(app, [*args, "--paper-rules"])
    assert both.exit_code == 2 and "choose one" in both.output
    fd = runner.invoke(app, [*args, "--offload", "fastdecode"])
    assert fd.exit_code == 2 and "fastdecode has none" in fd.output


def test_bench_device_only_options_are_the_ones_the_engine_gets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--chunk-tokens / --recompute must reach build_sim_engine, not just be accepted."""
    import mlsyskit.serving.neo.engine as neo_engine
    from mlsyskit.serving.neo.engine import DeviceOnly
    from mlsyskit.serving.policy import KVAction

    seen: list[object] = []
    real = neo_engine.build_sim_engine

    def spy(*args: object, **kw: object) -> object:
        seen.append(kw.get("device_only"))
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(neo_engine, "build_sim_engine", spy)
    args = ["serve", "neo", "bench", "--num-requests", "6", "--rate", "inf", "--offload", "none"]
    for extra, want in ((["--chunk-tokens", "256", "--recompute"],
                         DeviceOnly(256, KVAction.DISCARD)),
                        (["--recompute"], DeviceOnly(None, KVAction.DISCARD)),
                        ([], None)):
        result = runner.invoke(app, [*args, *extra])
        assert result.exit_code == 0, result.output
        assert seen[-1] == want


def test_bench_refuses_options_the_device_only_engine_would_ignore(tmp_path: Path) -> None:
    # --tables are NEO's planning tables and --paper-rules NEO's rules: with --offload none
    # they were silently dropped (on the real executor both; on the simulator --tables)
    from mlsyskit.serving.neo.cost import CostTables
    from mlsyskit.serving.neo.engine import SETUPS

    tables = tmp_path / "t.json"
    CostTables.sample(SETUPS["t4-7b"].costs(), max_tokens=256, source="test").to_json(tables)
    base = ["serve", "neo", "bench", "--num-requests", "2", "--rate", "inf", "--offload", "none"]
    for extra in (["--tables", str(tables)],
                  ["--executor", "torch", "--model", "tiny", "--paper-rules"],
                  ["--executor", "torch", "--model", "tiny", "--tables", str(tables)]):
        result = runner.invoke(app, [*base, *extra])
        assert result.exit_code == 2, result.output
        assert "not none" in result.output
