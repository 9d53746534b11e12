from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlsyskit.errors import UnknownNameError
from mlsyskit.serving.model import ModelError, get_model_config, model_config_from_hf


def test_tiny_sizes_by_hand() -> None:
    cfg = get_model_config("tiny")
    # embed + untied head: 2 * 264 * 64; layer: q,o 64*64 each, k,v 64*32 each, MLP 3*64*128,
    # two norms 2*64; final norm 64.
    per_layer = 2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128 + 2 * 64
    assert cfg.params_per_layer == per_layer
    assert cfg.num_params == 2 * 264 * 64 + 2 * per_layer + 64
    assert cfg.weight_bytes == 2 * cfg.num_params
    assert cfg.flops_per_token == 2 * cfg.num_params
    assert cfg.kv_bytes_per_token == 2 * 2 * 2 * 16 * 2


@pytest.mark.parametrize(
    ("name", "kv_kib", "params_b"),
    [("llama-2-7b", 512, 6.74), ("llama-3-8b", 128, 8.03), ("llama-3.1-70b", 320, 70.55),
     ("gpt-j-6b", 448, 6.05)],
)
def test_paper_shapes(name: str, kv_kib: int, params_b: float) -> None:
    cfg = get_model_config(name)
    assert cfg.kv_bytes_per_token == kv_kib * 1024
    assert cfg.num_params / 1e9 == pytest.approx(params_b, abs=0.01)


def test_unknown_preset_lists_known() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown model 'llama-9'.*tiny"):
        get_model_config("llama-9")


def test_invalid_shape_is_rejected() -> None:
    import dataclasses

    with pytest.raises(ModelError, match="multiple of num_kv_heads"):
        dataclasses.replace(get_model_config("tiny"), num_kv_heads=3)


def _write(tmp_path: Path, data: dict[str, object]) -> Path:
    (tmp_path / "config.json").write_text(json.dumps(data))
    return tmp_path


def test_from_hf_config_defaults(tmp_path: Path) -> None:
    cfg = model_config_from_hf(_write(tmp_path, {
        "vocab_size": 100, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3,
        "num_attention_heads": 4, "rope_parameters": {"rope_theta": 5e5, "rope_type": "default"},
    }))
    assert (cfg.head_dim, cfg.num_kv_heads, cfg.rope_theta, cfg.num_layers) == (8, 4, 5e5, 3)


def test_from_hf_config_names_missing_field(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"missing field.*num_hidden_layers"):
        model_config_from_hf(_write(tmp_path, {
            "vocab_size": 100, "hidden_size": 32, "intermediate_size": 64,
            "num_attention_heads": 4,
        }))


def test_from_hf_config_bad_json_names_line(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{\n "vocab_size": 1,\n oops\n}')
    with pytest.raises(ModelError, match=r"config.json:3: invalid JSON"):
        model_config_from_hf(tmp_path)


def test_from_hf_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"missing config.json"):
        model_config_from_hf(tmp_path)
