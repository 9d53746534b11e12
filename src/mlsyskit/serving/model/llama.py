"""``PagedLlama``: a Llama-architecture model whose attention runs over a paged KV cache.

One ``forward`` serves a whole engine step: prefills (or prefill chunks) and decodes of
different lengths together. It is composed of public steps an executor may call itself:

* ``embed(token_ids) -> hidden [T, hidden_size]`` and ``rope(positions) -> (cos, sin)``
* for each ``layer`` in ``layers``: ``q, k, v = layer.qkv(hidden, positions, rope)``;
  ``attn = layer.attend(q, k, v, batch, cache)``; ``hidden = layer.finish(hidden, attn)``
* ``final_logits(hidden) -> logits`` (final RMSNorm + LM head, on any rows).

``attend`` can be called once per sub-batch (``SequenceBatch.select``) with different caches,
so an executor can run some sequences' decode attention on another device or pool (NEO) and
scatter the outputs back before ``finish``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from mlsyskit.serving.model.batch import ModelOutput, SequenceBatch
from mlsyskit.serving.model.cache import PagedKVCache
from mlsyskit.serving.model.config import ModelConfig, ModelError
from mlsyskit.serving.model.layers import DecoderLayer, RMSNorm, rope_cos_sin


class PagedLlama(nn.Module):
    """Llama (RMSNorm, RoPE, grouped-query attention, SwiGLU) over a ``PagedKVCache``.

    Parameters
    ----------
    config : ModelConfig
        Shape; must have ``gated_mlp=True``.
    seed : int
        Seed of the random initialisation (normal, std 0.02; norms at 1).
    dtype : torch.dtype
        Parameter type.

    Parameter names equal Hugging Face ``LlamaForCausalLM``'s without the ``model.`` prefix, so
    checkpoints map one to one.
    """

    def __init__(
        self, config: ModelConfig, *, seed: int = 0, dtype: torch.dtype = torch.float32
    ) -> None:
        super().__init__()
        if not config.gated_mlp:
            raise ModelError(
                f"PagedLlama builds Llama models only; {config.name!r} has a non-gated MLP "
                "(its shape is for the simulator)"
            )
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self._init_weights(seed)
        self.to(dtype)
        self.eval()

    def _init_weights(self, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, param in self.named_parameters():
                if name.endswith("layernorm.weight") or name == "norm.weight":
                    param.fill_(1.0)
                else:
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.02)

    @classmethod
    def from_pretrained(cls, path: Path, dtype: torch.dtype = torch.float32) -> PagedLlama:
        """Load a local Hugging Face Llama directory (config.json + ``*.safetensors``).

        Raises
        ------
        ModelError
            Missing config.json / weights, unsupported architecture options, or missing or
            unexpected tensors (all named in the message).
        """
        from mlsyskit.serving.model.checkpoint import load_pretrained

        return load_pretrained(Path(path), dtype)

    def save_pretrained(self, path: Path) -> None:
        """Write config.json + model.safetensors in Hugging Face Llama layout."""
        from mlsyskit.serving.model.checkpoint import save_pretrained

        save_pretrained(self, Path(path))

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return self.embed_tokens.weight.device

    def embed(self, token_ids: Tensor) -> Tensor:
        """Token embeddings ``[T, hidden_size]``."""
        return self.embed_tokens(token_ids.to(self.device))

    def rope(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """RoPE ``cos, sin`` ``[T, head_dim]`` of ``positions``, shared by all layers' ``qkv``."""
        return rope_cos_sin(positions.to(self.device), self.config.head_dim,
                            self.config.rope_theta)

    def final_logits(self, hidden: Tensor) -> Tensor:
        """Final RMSNorm and LM head on any rows of hidden states: ``[N, vocab]``."""
        return self.lm_head(self.norm(hidden))

    def run_layers(
        self, batch: SequenceBatch, cache: PagedKVCache, hidden_layers: Sequence[int] = ()
    ) -> tuple[Tensor, dict[int, Tensor]]:
        """All layers over all new tokens: last hidden ``[T, hidden]`` and captured layers.

        ``captured[i]`` is layer ``i``'s output ``[T, hidden]`` (0-based; Hugging Face's
        ``hidden_states[i + 1]``).
        """
        wanted = set(hidden_layers)
        bad = sorted(i for i in wanted if not 0 <= i < self.config.num_layers)
        if bad:
            raise ModelError(
                f"hidden_layers {bad} outside [0, {self.config.num_layers}) for "
                f"{self.config.name!r}"
            )
        positions = batch.positions.to(self.device)
        rope = self.rope(positions)
        hidden = self.embed(batch.token_ids)
        captured: dict[int, Tensor] = {}
        for layer in self.layers:
            assert isinstance(layer, DecoderLayer)
            q, k, v = layer.qkv(hidden, positions, rope)
            attn = layer.attend(q, k, v, batch, cache)
            hidden = layer.finish(hidden, attn)
            if layer.layer_idx in wanted:
                captured[layer.layer_idx] = hidden
        return hidden, captured

    @torch.no_grad()
    def forward(
        self, batch: SequenceBatch, cache: PagedKVCache, hidden_layers: Sequence[int] = ()
    ) -> ModelOutput:
        """One engine step: write the new tokens' K/V and return last-token logits.

        Parameters
        ----------
        batch : SequenceBatch
            New tokens of every sequence in this step.
        cache : PagedKVCache
            The pool the block tables point into.
        hidden_layers : Sequence[int]
            Layers (0-based) whose output at each sequence's last new token to return.

        Returns
        -------
        ModelOutput
            ``logits [num_seqs, vocab]`` and ``hidden {layer: [num_seqs, hidden]}``.
        """
        hidden, captured = self.run_layers(batch, cache, hidden_layers)
        last = batch.last_token_indices().to(self.device)
        return ModelOutput(
            logits=self.final_logits(hidden[last]),
            hidden={i: h[last] for i, h in sorted(captured.items())},
        )
