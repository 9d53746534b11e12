"""Transformer layer shapes of the paper's encoders and LLMs (Optimus, Appendix A).

A model is a stack of identical layers; the cost model turns one layer into its kernel
sequence, so this module only records shapes.  Parameter counts follow the usual
``12 h^2`` (attention + 2-matrix MLP with ``ffn = 4h``) formula, generalised to any ``ffn``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlsyskit.errors import UnknownNameError


@dataclass(frozen=True)
class TransformerSpec:
    """Shape of one transformer stack.

    Parameters
    ----------
    name
        Preset name, e.g. ``"vit-22b"``.
    hidden
        Model width ``h``.
    num_layers
        Depth.
    ffn
        MLP inner width.
    num_heads
        Attention heads (head dim = hidden / heads).
    causal
        Causal attention (LLM) halves the attention FLOPs of flash attention.
    """

    name: str
    hidden: int
    num_layers: int
    ffn: int
    num_heads: int
    causal: bool

    @property
    def params_per_layer(self) -> float:
        """Weights of one layer (QKV + proj + two MLP matrices), biases and norms ignored."""
        return 4.0 * self.hidden**2 + 2.0 * self.hidden * self.ffn

    @property
    def num_params(self) -> float:
        return self.params_per_layer * self.num_layers


# Appendix A of the paper.  GPT/Llama rows give no MLP width; Megatron's 4h is used.
PRESETS: dict[str, TransformerSpec] = {
    "vit-3b": TransformerSpec("vit-3b", 2304, 48, 9216, 18, causal=False),
    "vit-5b": TransformerSpec("vit-5b", 3072, 48, 12288, 24, causal=False),
    "vit-11b": TransformerSpec("vit-11b", 4096, 48, 16384, 32, causal=False),
    "vit-22b": TransformerSpec("vit-22b", 6144, 48, 24576, 48, causal=False),
    "gpt-11b": TransformerSpec("gpt-11b", 3072, 80, 4 * 3072, 24, causal=True),
    "llama-70b": TransformerSpec("llama-70b", 8192, 80, 4 * 8192, 64, causal=True),
    "gpt-175b": TransformerSpec("gpt-175b", 12288, 96, 4 * 12288, 96, causal=True),
    # Tiny shapes for tests and the CPU run.
    "vit-tiny": TransformerSpec("vit-tiny", 128, 8, 512, 4, causal=False),
    "gpt-tiny": TransformerSpec("gpt-tiny", 128, 8, 512, 4, causal=True),
}


def get_model(name: str) -> TransformerSpec:
    """The preset called ``name`` (case-insensitive).

    Raises
    ------
    UnknownNameError
        No such preset.
    """
    key = name.lower()
    if key not in PRESETS:
        raise UnknownNameError("model", name, PRESETS)
    return PRESETS[key]
