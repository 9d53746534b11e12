from __future__ import annotations

from pathlib import Path

import pytest

from mlsyskit.errors import ConfigError, UnknownNameError
from mlsyskit.training.optimus.config import builtin_config_names, load_builtin, load_config


def test_builtin_configs_load_and_match_appendix_d() -> None:
    names = builtin_config_names()
    assert {"small", "vit22b_gpt175b_1536", "vit22b_gpt175b_2048", "vit22b_gpt175b_3072"} <= set(
        names
    )
    for gpus, dp, mb in ((1536, 24, 32), (2048, 32, 24), (3072, 48, 16)):
        job = load_builtin(f"vit22b_gpt175b_{gpus}")
        plan = job.llm_plan
        assert (plan.dp, plan.pp, plan.tp, plan.num_microbatches) == (dp, 8, 8, mb)
        # global batch 1536 = DP x microbatches x microbatch size
        assert plan.dp * plan.num_microbatches * plan.microbatch_size == 1536
        assert job.gpu.fp16_tflops == 989


def test_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ngpu: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml line \d"):
        load_config(bad)


def test_inconsistent_gpu_count_is_rejected(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "gpu: h100-sxm\nnum_gpus: 100\nencoders: [{model: vit-3b}]\nllm: {model: gpt-11b}\n"
        "llm_plan: {dp: 2, pp: 4, tp: 4, num_microbatches: 8}\n"
    )
    with pytest.raises(ConfigError, match="dp\\*pp\\*tp = 32 but num_gpus = 100"):
        load_config(cfg)


def test_unknown_model_lists_known_ones(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "gpu: h100-sxm\nnum_gpus: 32\nencoders: [{model: vit-99b}]\nllm: {model: gpt-11b}\n"
        "llm_plan: {dp: 2, pp: 4, tp: 4, num_microbatches: 8}\n"
    )
    with pytest.raises(UnknownNameError, match="vit-22b"):
        load_config(cfg)


def test_public_api_is_pinned() -> None:
    import mlsyskit.training.optimus as optimus

    assert optimus.__all__ == [
        "Calibration", "CostModel", "JobConfig", "ReplayReport", "Schedule", "SearchResult",
        "baseline_schedule", "efficiency", "load_builtin", "load_config", "optimus_schedule",
        "replay", "search",
    ]
    assert "torch" not in dir(optimus)
