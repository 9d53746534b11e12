"""Model shapes: the frozen ``ModelConfig``, its presets, and reading a Hugging Face config.json.

A config is only a shape. The simulator prices paper-scale models (Llama-2-7B, Llama-3-8B,
Llama-3.1-70B, GPT-J-6B) from it without ever allocating weights; the real engine builds
``PagedLlama`` from the small presets ("tiny" for tests, "small" for demos).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlsyskit.errors import ConfigError, UnknownNameError


class ModelError(ConfigError):
    """A malformed model config, checkpoint directory or tokenizer directory."""


@dataclass(frozen=True)
class ModelConfig:
    """The shape of a decoder-only transformer (Llama family).

    Parameters
    ----------
    name : str
        Preset or checkpoint name.
    vocab_size, hidden_size, intermediate_size, num_layers, num_heads, num_kv_heads, head_dim : int
        Usual transformer sizes; ``num_heads`` must be a multiple of ``num_kv_heads`` (GQA).
    max_position : int
        Longest context (prompt + output) in tokens.
    rope_theta : float
        RoPE base frequency.
    rms_norm_eps : float
        RMSNorm epsilon.
    dtype_bytes : int
        Bytes per weight / KV element when served (2 = fp16/bf16). Only used for sizing.
    gated_mlp : bool
        True for a SwiGLU MLP (3 matrices, Llama); False for a 2-matrix MLP (GPT-J). Sizing only:
        ``PagedLlama`` always builds the gated Llama MLP and refuses ``gated_mlp=False``.
    tie_word_embeddings : bool
        Whether the LM head shares the embedding matrix.
    """

    name: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    max_position: int
    rope_theta: float
    rms_norm_eps: float
    dtype_bytes: int = 2
    gated_mlp: bool = True
    tie_word_embeddings: bool = False

    def __post_init__(self) -> None:
        for field_name in (
            "vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
            "num_kv_heads", "head_dim", "max_position", "dtype_bytes",
        ):
            value = getattr(self, field_name)
            if not isinstance(value, int) or value <= 0:
                raise ModelError(
                    f"model config {self.name!r}: {field_name} must be a positive integer; "
                    f"got {value!r}"
                )
        if self.num_heads % self.num_kv_heads:
            raise ModelError(
                f"model config {self.name!r}: num_heads ({self.num_heads}) must be a multiple "
                f"of num_kv_heads ({self.num_kv_heads})"
            )
        if self.head_dim % 2:
            raise ModelError(f"model config {self.name!r}: head_dim must be even for RoPE")

    @property
    def kv_bytes_per_token(self) -> int:
        """KV cache bytes per token over all layers: 2 (K and V) x layers x kv_heads x head_dim."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * self.dtype_bytes

    @property
    def params_per_layer(self) -> int:
        """Parameters of one decoder layer (projections, MLP, two norms)."""
        attn = self.hidden_size * self.head_dim * (2 * self.num_heads + 2 * self.num_kv_heads)
        mlp = (3 if self.gated_mlp else 2) * self.hidden_size * self.intermediate_size
        return attn + mlp + 2 * self.hidden_size

    @property
    def num_params(self) -> int:
        """Total parameters: embeddings, layers, final norm and LM head (unless tied)."""
        embed = self.vocab_size * self.hidden_size
        head = 0 if self.tie_word_embeddings else embed
        return embed + head + self.num_layers * self.params_per_layer + self.hidden_size

    @property
    def weight_bytes(self) -> int:
        """Bytes of all weights at ``dtype_bytes`` per parameter."""
        return self.num_params * self.dtype_bytes

    @property
    def flops_per_token(self) -> int:
        """Dense FLOPs per token (2 per multiply-add over the parameters, attention excluded)."""
        return 2 * self.num_params


_PRESETS: dict[str, ModelConfig] = {
    # Tests: two layers, 259 byte-level ids + 5 reserved specials (see ByteTokenizer).
    "tiny": ModelConfig("tiny", 264, 64, 128, 2, 4, 2, 16, 256, 10000.0, 1e-6),
    # Demos: about 2.9 M parameters, still fast on 2 CPU cores.
    "small": ModelConfig("small", 264, 256, 688, 4, 8, 2, 32, 2048, 10000.0, 1e-6),
    # Paper-scale shapes (Hugging Face config.json of each model); only the simulator uses them.
    "llama-2-7b": ModelConfig("llama-2-7b", 32000, 4096, 11008, 32, 32, 32, 128, 4096,
                              10000.0, 1e-5),
    "llama-3-8b": ModelConfig("llama-3-8b", 128256, 4096, 14336, 32, 32, 8, 128, 8192,
                              500000.0, 1e-5),
    "llama-3.1-70b": ModelConfig("llama-3.1-70b", 128256, 8192, 28672, 80, 64, 8, 128, 131072,
                                 500000.0, 1e-5),
    # GPT-J: MHA with 16 heads of 256, a 2-matrix GELU MLP; rotary on part of each head.
    "gpt-j-6b": ModelConfig("gpt-j-6b", 50400, 4096, 16384, 28, 16, 16, 256, 2048,
                            10000.0, 1e-5, gated_mlp=False),
}


def model_names() -> list[str]:
    """Names of the built-in presets."""
    return sorted(_PRESETS)


def get_model_config(name: str) -> ModelConfig:
    """The preset called ``name``.

    Raises
    ------
    UnknownNameError
        If ``name`` is not a preset; the message lists the known ones.
    """
    try:
        return _PRESETS[name]
    except KeyError:
        raise UnknownNameError("model", name, _PRESETS) from None


def read_config_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path`` (a config.json file or the directory holding one).

    Raises
    ------
    ModelError
        If the file is missing, not JSON (with the line), or not an object.
    """
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise ModelError(f"{file}: missing config.json (expected a Hugging Face model directory)")
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{file}:{exc.lineno}: invalid JSON ({exc.msg})") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{file}: expected a JSON object at the top level")
    return data


def _rope_theta(data: dict[str, Any]) -> float:
    params = data.get("rope_parameters")
    if isinstance(params, dict) and "rope_theta" in params:
        return float(params["rope_theta"])
    return float(data.get("rope_theta", 10000.0))


def rope_type(data: dict[str, Any]) -> str:
    """The RoPE variant named in a config.json (``"default"`` when plain RoPE)."""
    for key in ("rope_parameters", "rope_scaling"):
        params = data.get(key)
        if isinstance(params, dict):
            return str(params.get("rope_type", params.get("type", "default")))
    return "default"


def model_config_from_hf(path: Path) -> ModelConfig:
    """Read a local Hugging Face ``config.json`` (a file or the directory holding it).

    Only Llama-style fields are read. ``head_dim`` defaults to hidden / heads and
    ``num_key_value_heads`` to ``num_attention_heads``, as in Hugging Face.

    Raises
    ------
    ModelError
        If the file is missing, not JSON, or lacks a required field (named in the message).
    """
    path = Path(path)
    data = read_config_json(path)
    file = path / "config.json" if path.is_dir() else path
    required = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                "num_attention_heads")
    missing = [key for key in required if key not in data]
    if missing:
        raise ModelError(f"{file}: missing field(s) {', '.join(missing)}")
    try:
        num_heads = int(data["num_attention_heads"])
        hidden = int(data["hidden_size"])
        head_dim = data.get("head_dim") or hidden // num_heads
        return ModelConfig(
            name=str(data.get("_name_or_path") or (path if path.is_dir() else path.parent).name),
            vocab_size=int(data["vocab_size"]),
            hidden_size=hidden,
            intermediate_size=int(data["intermediate_size"]),
            num_layers=int(data["num_hidden_layers"]),
            num_heads=num_heads,
            num_kv_heads=int(data.get("num_key_value_heads") or num_heads),
            head_dim=int(head_dim),
            max_position=int(data.get("max_position_embeddings", 2048)),
            rope_theta=_rope_theta(data),
            rms_norm_eps=float(data.get("rms_norm_eps", 1e-6)),
            dtype_bytes=4 if data.get("torch_dtype", data.get("dtype")) == "float32" else 2,
            tie_word_embeddings=bool(data.get("tie_word_embeddings", False)),
        )
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{file}: bad field value ({exc})") from exc
