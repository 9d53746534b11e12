"""Hugging Face interop: load/save Llama checkpoints (safetensors) and build the HF twin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mlsyskit.serving.model.config import (
    ModelConfig,
    ModelError,
    model_config_from_hf,
    read_config_json,
    rope_type,
)

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM

    from mlsyskit.serving.model.llama import PagedLlama


def _check_supported(path: Path, data: dict[str, Any]) -> None:
    """Refuse options PagedLlama does not implement instead of computing something else."""
    problems = []
    if data.get("model_type", "llama") != "llama":
        problems.append(f"model_type {data.get('model_type')!r} (only 'llama')")
    if rope_type(data) != "default":
        problems.append(f"rope type {rope_type(data)!r} (only plain RoPE)")
    if data.get("hidden_act", "silu") != "silu":
        problems.append(f"hidden_act {data.get('hidden_act')!r} (only 'silu')")
    for flag in ("attention_bias", "mlp_bias"):
        if data.get(flag):
            problems.append(f"{flag}=true")
    if problems:
        raise ModelError(f"{path / 'config.json'}: unsupported {'; '.join(problems)}")


def _hf_config_dict(config: ModelConfig) -> dict[str, Any]:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "_name_or_path": config.name,
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_kv_heads,
        "head_dim": config.head_dim,
        "max_position_embeddings": config.max_position,
        "rope_theta": config.rope_theta,
        "rms_norm_eps": config.rms_norm_eps,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": config.tie_word_embeddings,
        "torch_dtype": "float32",
    }


def save_pretrained(model: PagedLlama, path: Path) -> None:
    """Write ``config.json`` and ``model.safetensors`` (HF Llama names) into ``path``."""
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(_hf_config_dict(model.config), indent=2))
    tensors = {
        f"model.{name}" if not name.startswith("lm_head") else name: t.detach().contiguous()
        for name, t in model.state_dict().items()
        if not (model.config.tie_word_embeddings and name.startswith("lm_head"))
    }
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise ModelError(
            f"{path}: missing model.safetensors (no *.safetensors weight file in the directory)"
        )
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            tensors.update(load_file(str(file)))
        except Exception as exc:  # safetensors raises its own error types
            raise ModelError(f"{file}: not a readable safetensors file ({exc})") from exc
    return tensors


def load_pretrained(path: Path, dtype: torch.dtype) -> PagedLlama:
    """A ``PagedLlama`` from a local HF Llama directory (see ``PagedLlama.from_pretrained``)."""
    from mlsyskit.serving.model.llama import PagedLlama

    if not path.is_dir():
        raise ModelError(f"{path}: not a directory (expected config.json + *.safetensors)")
    _check_supported(path, read_config_json(path))
    config = model_config_from_hf(path)
    tensors = {
        (name.removeprefix("model.")): t for name, t in _read_tensors(path).items()
        if "rotary_emb" not in name
    }
    model = PagedLlama(config, dtype=dtype)
    expected = model.state_dict()
    if config.tie_word_embeddings:
        tensors.setdefault("lm_head.weight", tensors.get("embed_tokens.weight", torch.empty(0)))
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ModelError(
            f"{path}: weights do not match the config; missing tensors "
            f"{missing[:5] or 'none'}{' ...' if len(missing) > 5 else ''}; unexpected tensors "
            f"{unexpected[:5] or 'none'}{' ...' if len(unexpected) > 5 else ''}"
        )
    for name, tensor in tensors.items():
        if tensor.shape != expected[name].shape:
            raise ModelError(
                f"{path}: tensor {name} has shape {tuple(tensor.shape)}, config.json implies "
                f"{tuple(expected[name].shape)}"
            )
    model.load_state_dict({k: v.to(dtype) for k, v in tensors.items()})
    return model


def to_hf_llama(model: PagedLlama) -> LlamaForCausalLM:
    """A ``transformers.LlamaForCausalLM`` with the same weights (for parity and baselines)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = _hf_config_dict(model.config)
    for key in ("architectures", "model_type", "_name_or_path", "torch_dtype"):
        cfg.pop(key)
    hf_config = LlamaConfig(**cfg)
    hf = LlamaForCausalLM(hf_config)
    state = {
        f"model.{name}" if not name.startswith("lm_head") else name: t
        for name, t in model.state_dict().items()
    }
    hf.load_state_dict(state, strict=False)
    missing = set(hf.state_dict()) - set(state)
    if missing - {"lm_head.weight"}:
        raise ModelError(f"to_hf_llama: tensors not mapped: {sorted(missing)[:5]}")
    # nn.Module.to directly: transformers wraps ``to`` in a decorator mypy cannot see through
    torch.nn.Module.to(hf, device=model.device, dtype=model.embed_tokens.weight.dtype)
    hf.eval()
    return hf
