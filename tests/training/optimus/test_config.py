from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlsyskit.errors import ConfigError
from mlsyskit.training.optimus.config import builtin_config_names, load_builtin, load_config
from mlsyskit.training.optimus.errors import OptimusConfigError


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


def test_unknown_model_names_file_key_and_lists_known_ones(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "gpu: h100-sxm\nnum_gpus: 32\nencoders: [{model: vit-99b}]\nllm: {model: gpt-11b}\n"
        "llm_plan: {dp: 2, pp: 4, tp: 4, num_microbatches: 8}\n"
    )
    with pytest.raises(ConfigError, match=r"c.yaml: encoders\[0\].model: unknown model "
                                          r"'vit-99b'; known: .*vit-22b"):
        load_config(cfg)


# A valid job (the shipped ``small`` config); each case below breaks one key.
BASE: dict[str, Any] = {
    "name": "t", "gpu": "a100-80gb", "num_gpus": 32, "gpus_per_node": 8,
    "links": {"intra_node": "nvlink3", "inter_node": "ib-hdr"},
    "encoders": [{"model": "vit-3b", "seq_len": 1024}],
    "llm": {"model": "gpt-11b", "seq_len": 2048},
    "llm_plan": {"dp": 2, "pp": 4, "tp": 4, "virtual_stages": 2, "num_microbatches": 8,
                 "microbatch_size": 2},
    "recompute": True,
}


def _write(tmp_path: Path, **changes: Any) -> Path:
    """BASE with ``changes`` (``a__b`` sets ``BASE[a][b]``) written to ``c.yaml``."""
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        if "__" in key:
            top, sub = key.split("__")
            target = data[top][0] if isinstance(data[top], list) else data[top]
            target[sub] = value
        else:
            data[key] = value
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_base_config_is_valid(tmp_path: Path) -> None:
    job = load_config(_write(tmp_path))
    assert (job.num_gpus, job.gpus_per_node, job.llm_plan.tp, job.recompute) == (32, 8, 4, True)
    assert load_config(_write(tmp_path, recompute=False)).recompute is False


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        # F4: typos that used to crash with a traceback
        ({"num_gpus": "abc"}, r"num_gpus must be a positive integer; got 'abc'"),
        ({"gpus_per_node": "abc"}, r"gpus_per_node must be a positive integer; got 'abc'"),
        ({"num_gpus": None}, r"num_gpus must be a positive integer; got None"),
        ({"encoders__seq_len": "lots"},
         r"encoders\[0\].seq_len must be a positive integer; got 'lots'"),
        ({"llm__seq_len": 0}, r"llm.seq_len must be >= 1; got 0"),
        ({"links": ["nvlink3"]}, r"links must be a mapping .*; got \['nvlink3'\]"),
        ({"llm_plan__num_microbatches": None},
         r"llm_plan.num_microbatches must be a positive integer; got None"),
        # F5: silent coercions
        ({"llm_plan__tp": 4.5}, r"llm_plan.tp must be a positive integer; got 4.5"),
        ({"llm_plan__tp": 4.0}, r"llm_plan.tp must be a positive integer; got 4.0"),
        ({"llm_plan__dp": True}, r"llm_plan.dp must be a positive integer; got True"),
        ({"num_gpus": "32"}, r"num_gpus must be a positive integer; got '32'"),
        ({"recompute": "no"}, r"recompute must be true or false; got 'no'"),
        ({"recompute": 1}, r"recompute must be true or false; got 1"),
        # F3: node size must be positive
        ({"gpus_per_node": 0}, r"gpus_per_node must be >= 1; got 0"),
        ({"gpus_per_node": -4}, r"gpus_per_node must be >= 1; got -4"),
        # F6: unknown names say which key
        ({"gpu": "rtx-9090"}, r"gpu: unknown device 'rtx-9090'; known gpus: .*h100-sxm"),
        ({"gpu": "nvlink3"}, r"gpu: 'nvlink3' is a link, not a gpu"),
        ({"links": {"intra_node": "nvlink9"}},
         r"links.intra_node: unknown device 'nvlink9'; known links: .*nvlink4"),
        ({"links": {"inter_node": "h100-sxm"}}, r"links.inter_node: 'h100-sxm' is a gpu"),
        ({"llm__model": 7}, r"llm.model must be a model name; got 7"),
    ],
)
def test_bad_values_name_file_key_and_value(
    tmp_path: Path, changes: dict[str, Any], pattern: str
) -> None:
    with pytest.raises(OptimusConfigError, match=r"c\.yaml: " + pattern) as info:
        load_config(_write(tmp_path, **changes))
    assert info.value.exit_code == 2


def test_llm_tp_must_divide_attention_heads(tmp_path: Path) -> None:
    # GPT-11B has 24 heads: TP 16 cannot split them, TP 8 can (F2)
    bad = _write(tmp_path, num_gpus=128, gpus_per_node=16, llm_plan__tp=16)
    with pytest.raises(OptimusConfigError,
                       match=r"c\.yaml: llm_plan.tp = 16 does not divide the 24 attention heads"):
        load_config(bad)
    ok = load_config(_write(tmp_path, num_gpus=64, llm_plan__tp=8))
    assert ok.llm_plan.tp == 8 and ok.llm.spec.num_heads % 8 == 0


def test_every_shipped_config_has_llm_tp_dividing_heads() -> None:
    for name in builtin_config_names():
        job = load_builtin(name)
        assert job.llm.spec.num_heads % job.llm_plan.tp == 0


def test_public_api_is_pinned() -> None:
    import mlsyskit.training.optimus as optimus

    assert optimus.__all__ == [
        "Calibration", "CostModel", "JobConfig", "ReplayReport", "Schedule", "SearchResult",
        "baseline_schedule", "efficiency", "load_builtin", "load_config", "optimus_schedule",
        "replay", "search",
    ]
    assert "torch" not in dir(optimus)
