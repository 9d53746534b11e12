"""The serving engine's model: a Llama-architecture ``PagedLlama`` over a ``PagedKVCache``.

``PagedLlama.forward(batch, cache)`` runs one engine step (prefills and decodes of any lengths
together) and is composed of per-layer steps (``qkv`` / ``attend`` / ``finish``, see
``mlsyskit.serving.model.llama``) so executors can split a layer across devices (NEO).
"""

from __future__ import annotations

from mlsyskit.serving.model.batch import ModelOutput, SequenceBatch
from mlsyskit.serving.model.cache import PagedKVCache
from mlsyskit.serving.model.checkpoint import save_pretrained, to_hf_llama
from mlsyskit.serving.model.config import (
    ModelConfig,
    ModelError,
    get_model_config,
    model_config_from_hf,
    model_names,
)
from mlsyskit.serving.model.layers import DecoderLayer, paged_attention
from mlsyskit.serving.model.llama import PagedLlama
from mlsyskit.serving.model.parity import max_logit_diff_vs_hf, paged_full_logits
from mlsyskit.serving.model.tokenizer import ByteTokenizer, HFTokenizer, Tokenizer, load_tokenizer

__all__ = [
    "ByteTokenizer",
    "DecoderLayer",
    "HFTokenizer",
    "ModelConfig",
    "ModelError",
    "ModelOutput",
    "PagedKVCache",
    "PagedLlama",
    "SequenceBatch",
    "Tokenizer",
    "get_model_config",
    "load_tokenizer",
    "max_logit_diff_vs_hf",
    "model_config_from_hf",
    "model_names",
    "paged_attention",
    "paged_full_logits",
    "save_pretrained",
    "to_hf_llama",
]
