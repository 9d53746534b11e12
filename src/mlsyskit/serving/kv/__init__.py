"""KV-cache block accounting (device and host pools)."""

from mlsyskit.serving.kv.block_manager import BlockManager, BlockPool

__all__ = ["BlockManager", "BlockPool"]
