"""``PagedKVCache``: the K/V storage of one pool (device or host), in fixed-size blocks.

It only stores tensors. Which block belongs to which sequence is decided by the engine's block
manager and arrives here as block tables inside a ``SequenceBatch``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mlsyskit.serving.model.config import ModelConfig, ModelError


class PagedKVCache:
    """Key and value tensors ``[num_layers, num_blocks, block_size, num_kv_heads, head_dim]``.

    Parameters
    ----------
    config : ModelConfig
        The model whose K/V this stores.
    num_blocks : int
        Blocks in this pool.
    block_size : int
        Tokens per block.
    device : str or torch.device
        Where the storage lives ("cpu", "cuda", ...).
    dtype : torch.dtype
        Element type (float32 by default, matching ``PagedLlama``).
    """

    def __init__(
        self,
        config: ModelConfig,
        num_blocks: int,
        block_size: int,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ModelError(
                f"PagedKVCache: num_blocks ({num_blocks}) and block_size ({block_size}) must be "
                ">= 1"
            )
        self.config = config
        self.num_blocks = num_blocks
        self.block_size = block_size
        shape = (config.num_layers, num_blocks, block_size, config.num_kv_heads, config.head_dim)
        self.key = torch.zeros(shape, dtype=dtype, device=device)
        self.value = torch.zeros(shape, dtype=dtype, device=device)

    @property
    def device(self) -> torch.device:
        """Device of the storage."""
        return self.key.device

    @property
    def dtype(self) -> torch.dtype:
        """Element type of the storage."""
        return self.key.dtype

    @property
    def num_bytes(self) -> int:
        """Bytes held by the key and value tensors."""
        return 2 * self.key.numel() * self.key.element_size()

    def layer_slots(self, layer: int) -> tuple[Tensor, Tensor]:
        """Views ``[num_blocks * block_size, num_kv_heads, head_dim]`` of one layer's K and V."""
        flat = (self.num_blocks * self.block_size, self.config.num_kv_heads, self.config.head_dim)
        return self.key[layer].view(flat), self.value[layer].view(flat)

    def write(self, layer: int, slots: Tensor, key: Tensor, value: Tensor) -> None:
        """Store ``key``/``value`` ``[T, num_kv_heads, head_dim]`` at flat ``slots`` ``[T]``."""
        k_slots, v_slots = self.layer_slots(layer)
        k_slots.index_copy_(0, slots, key.to(self.dtype))
        v_slots.index_copy_(0, slots, value.to(self.dtype))

    def copy_blocks_to(self, other: PagedKVCache, mapping: Sequence[tuple[int, int]]) -> None:
        """Copy whole blocks (all layers) into ``other``: ``(src block here, dst block there)``.

        Used to swap sequences between the device and the host pool. The two caches must have
        the same model shape and block size; they may differ in device, dtype and block count.
        """
        if not mapping:
            return
        if other.key.shape[0] != self.key.shape[0] or other.key.shape[2:] != self.key.shape[2:]:
            raise ModelError(
                f"copy_blocks_to: cache shapes differ ({tuple(self.key.shape)} vs "
                f"{tuple(other.key.shape)}); need the same layers, block size and heads"
            )
        src = [s for s, _ in mapping]
        dst = [d for _, d in mapping]
        for name, ids, limit in (("source", src, self.num_blocks), ("destination", dst,
                                                                    other.num_blocks)):
            bad = [i for i in ids if not 0 <= i < limit]
            if bad:
                raise ModelError(f"copy_blocks_to: {name} block ids {bad} outside [0, {limit})")
        src_t = torch.tensor(src, dtype=torch.long, device=self.device)
        dst_t = torch.tensor(dst, dtype=torch.long, device=other.device)
        other.key[:, dst_t] = self.key[:, src_t].to(device=other.device, dtype=other.dtype)
        other.value[:, dst_t] = self.value[:, src_t].to(device=other.device, dtype=other.dtype)
