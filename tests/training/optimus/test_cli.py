from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlsyskit.cli import app

runner = CliRunner()


def test_plan_small_prints_plan_times_and_bubbles() -> None:
    result = runner.invoke(app, ["optimus", "plan", "small", "--fine-top-k", "1"])
    assert result.exit_code == 0, result.output
    assert "encoder plan" in result.output
    assert "Optimus (coarse + fine)" in result.output
    assert "TP" in result.output and "PP cool-down" in result.output
    # the times are the replay's, and every schedule replays clean
    assert "replayed" in result.output
    rows = [line for line in result.output.splitlines()
            if line.count("│") >= 5 and "schedule" not in line]
    assert len(rows) == 5 and all(row.split("│")[4].strip() == "0" for row in rows)


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


def _job_yaml(tmp_path: Path, name: str, **plan: int) -> Path:
    """The small job (ViT-3B + GPT-11B on A100s) with LLM plan overrides."""
    p = {"dp": 2, "pp": 4, "tp": 4, "virtual_stages": 2, "num_microbatches": 8,
         "microbatch_size": 2, **plan}
    cfg = tmp_path / name
    cfg.write_text(
        f"gpu: a100-80gb\nnum_gpus: {p['dp'] * p['pp'] * p['tp']}\ngpus_per_node: 8\n"
        "links: {intra_node: nvlink3, inter_node: ib-hdr}\n"
        "encoders: [{model: vit-3b, seq_len: 1024}]\nllm: {model: gpt-11b, seq_len: 2048}\n"
        f"llm_plan: {p}\n".replace("'", "")
    )
    return cfg


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("num_gpus: abc\n", ["c.yaml", "num_gpus", "'abc'"]),
        ("num_gpus: 32\ngpus_per_node: 0\n", ["c.yaml", "gpus_per_node", ">= 1"]),
        ("num_gpus: 32\nlinks: [nvlink3]\n", ["c.yaml", "links must be a mapping"]),
        ("gpu: rtx-9090\nnum_gpus: 32\n", ["c.yaml", "gpu: unknown device 'rtx-9090'", "a100"]),
    ],
)
def test_config_mistakes_exit_2_with_file_key_and_value(
    tmp_path: Path, text: str, needles: list[str]
) -> None:
    cfg = tmp_path / "c.yaml"
    base = ("encoders: [{model: vit-3b}]\nllm: {model: gpt-11b}\n"
            "llm_plan: {dp: 2, pp: 4, tp: 4, num_microbatches: 8}\nrecompute: true\n")
    cfg.write_text(("" if "gpu:" in text else "gpu: a100-80gb\n") + text + base)
    result = runner.invoke(app, ["optimus", "plan", str(cfg)])
    assert result.exit_code == 2, result.output
    flat = " ".join(result.output.split())  # rich may fold long lines
    assert "Traceback" not in flat
    for needle in needles:
        assert needle in flat


def test_llm_tp_not_dividing_heads_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["optimus", "plan", str(_job_yaml(tmp_path, "t.yaml", tp=16))])
    assert result.exit_code == 2, result.output
    assert "does not divide the 24 attention heads" in " ".join(result.output.split())


def test_chosen_encoder_plan_splits_the_heads() -> None:
    result = runner.invoke(app, ["optimus", "plan", "small", "--fine-top-k", "1"])
    assert result.exit_code == 0, result.output
    match = re.search(r"encoder plan DP(\d+) PP(\d+) TP(\d+)", result.output)
    assert match is not None
    assert 18 % int(match.group(3)) == 0  # ViT-3B has 18 heads


def test_no_encoder_plan_fits_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "oom.yaml"
    cfg.write_text("gpu: h100-sxm\nnum_gpus: 8\nencoders: [{model: vit-22b}]\n"
                   "llm: {model: gpt-175b}\nllm_plan: {dp: 1, pp: 1, tp: 8, num_microbatches: 8}\n")
    for verb in (["plan"], ["gantt", "-o", str(tmp_path / "g.png")]):
        result = runner.invoke(app, ["optimus", verb[0], str(cfg), *verb[1:]])
        assert result.exit_code == 2, result.output
        assert "no encoder plan fits" in " ".join(result.output.split())


def test_mistyped_shipped_config_lists_the_shipped_ones() -> None:
    result = runner.invoke(app, ["optimus", "plan", "smal"])
    assert result.exit_code == 2, result.output
    flat = " ".join(result.output.split())
    assert "'smal' is neither a YAML file nor a shipped config" in flat
    assert "small" in flat and "vit22b_gpt175b_3072" in flat


@pytest.mark.parametrize("option", ["--iterations", "--microbatches"])
def test_run_cpu_rejects_zero_as_bad_input(option: str) -> None:
    result = runner.invoke(app, ["optimus", "run-cpu", option, "0"])
    assert result.exit_code == 2, result.output


def test_baselines_that_cannot_split_the_encoder_heads_are_named_not_run(
    tmp_path: Path,
) -> None:
    """ViT-3B has 18 heads: at the LLM's TP 4 Megatron-LM cannot run it; Optimus can
    (its encoder plan picks its own TP)."""
    cfg = _job_yaml(tmp_path, "tp4.yaml", dp=2, tp=4)
    result = runner.invoke(app, ["optimus", "plan", str(cfg), "--fine-top-k", "1"])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "Optimus (coarse + fine)" in flat
    assert "Megatron-LM " not in flat.replace("Megatron-LM baselines", "")
    assert "no Megatron-LM baselines" in flat and "vit-3b (18 heads)" in flat
    gantt = runner.invoke(app, ["optimus", "gantt", str(cfg), "-o", str(tmp_path / "g.png")])
    assert gantt.exit_code == 2 and "does not divide the attention heads" in gantt.output
