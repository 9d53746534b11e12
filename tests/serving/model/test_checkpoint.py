from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mlsyskit.serving.model import (
    ModelError,
    PagedKVCache,
    PagedLlama,
    get_model_config,
)
from tests.serving.model.factories import make_batch, random_tokens

TINY = get_model_config("tiny")


def _logits(model: PagedLlama, tokens: list[int]) -> torch.Tensor:
    cache = PagedKVCache(model.config, num_blocks=4, block_size=8)
    return model(make_batch([tokens], [0], [[0, 1, 2, 3]]), cache).logits


def test_save_load_round_trip_and_hf_reads_it(tmp_path: Path) -> None:
    model = PagedLlama(TINY, seed=11)
    model.save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"config.json", "model.safetensors"}
    loaded = PagedLlama.from_pretrained(tmp_path)
    assert loaded.config.num_kv_heads == TINY.num_kv_heads
    tokens = random_tokens(20, seed=4)
    torch.testing.assert_close(_logits(loaded, tokens), _logits(model, tokens), atol=0, rtol=0)

    from transformers import LlamaForCausalLM

    hf = LlamaForCausalLM.from_pretrained(str(tmp_path), local_files_only=True).eval()
    with torch.no_grad():
        ref = hf(torch.tensor([tokens])).logits[0, -1]
    torch.testing.assert_close(_logits(model, tokens)[0], ref, atol=1e-5, rtol=0)


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"missing config.json"):
        PagedLlama.from_pretrained(tmp_path)
    PagedLlama(TINY).save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(ModelError, match=r"missing model.safetensors"):
        PagedLlama.from_pretrained(tmp_path)


def test_missing_tensor_and_field_are_named(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    PagedLlama(TINY).save_pretrained(tmp_path)
    weights = load_file(str(tmp_path / "model.safetensors"))
    del weights["model.layers.1.mlp.up_proj.weight"]
    save_file(weights, str(tmp_path / "model.safetensors"))
    with pytest.raises(ModelError, match=r"missing tensors \['layers.1.mlp.up_proj.weight'\]"):
        PagedLlama.from_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["intermediate_size"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match=r"missing field.*intermediate_size"):
        PagedLlama.from_pretrained(tmp_path)


def test_unsupported_rope_scaling_is_refused(tmp_path: Path) -> None:
    PagedLlama(TINY).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="unsupported rope type 'llama3'"):
        PagedLlama.from_pretrained(tmp_path)
