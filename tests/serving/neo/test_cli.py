"""``mlsyskit serve neo ...`` in-process."""

from __future__ import annotations

from typer.testing import CliRunner

from mlsyskit.cli import app

runner = CliRunner()


def test_setups_lists_every_paper_setup() -> None:
    result = runner.invoke(app, ["serve", "neo", "setups"])
    assert result.exit_code == 0, result.output
    for name in ("t4-7b", "a10g-8b-2", "a10g-8b-16", "h100x2-70b"):
        assert name in result.output


def test_bench_offload_choices_on_the_simulator() -> None:
    for offload in ("neo", "none", "fastdecode"):
        result = runner.invoke(app, ["serve", "neo", "bench", "--offload", offload,
                                     "--num-requests", "12", "--rate", "inf"])
        assert result.exit_code == 0, result.output
        assert "12 requests at offline" in result.output
        assert ("pipelined" in result.output) == (offload != "none")


def test_bench_rejects_an_unknown_setup() -> None:
    result = runner.invoke(app, ["serve", "neo", "bench", "--setup", "t5", "--num-requests", "2"])
    assert result.exit_code == 2
    assert "t4-7b" in result.output
