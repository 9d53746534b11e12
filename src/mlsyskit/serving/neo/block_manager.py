"""The engine's block manager plus growth in the host pool, for requests that decode there."""

from __future__ import annotations

from mlsyskit.serving.errors import KVCacheError
from mlsyskit.serving.kv import BlockManager


class NeoBlockManager(BlockManager):
    """A :class:`BlockManager` whose host-resident requests can grow their tables.

    In the device-only engine the host pool only parks swapped requests. Under NEO a request
    whose KV is on the host keeps decoding there (its attention runs on the CPU), so its host
    table must grow, and a CPU-destined prefill starts its table in the host pool.
    """

    def allocate_host(self, request_id: str, num_tokens: int) -> list[int] | None:
        """Grow the request's *host* table to cover ``num_tokens`` tokens.

        Returns the table, or ``None`` (changing nothing) when the host pool is too small.

        Raises
        ------
        KVCacheError
            If the request's KV is on the device.
        """
        if request_id in self._device_tables:
            raise KVCacheError(f"request {request_id} is on the device; swap it out first")
        table = self._host_tables.get(request_id)
        created = table is None
        if table is None:
            table = self._host_tables[request_id] = []
        need = self.blocks_for(num_tokens) - len(table)
        if need > 0:
            if need > self.host.num_free:
                if created:
                    del self._host_tables[request_id]
                return None
            table.extend(self.host.take(need))
        return table

    def on_host(self, request_id: str) -> bool:
        """Whether the request's KV lives in the host pool."""
        return request_id in self._host_tables

    def num_blocks_to_grow_host(self, request_id: str, num_tokens: int) -> int:
        """Host blocks :meth:`allocate_host` would take to cover ``num_tokens`` tokens."""
        have = len(self._host_tables.get(request_id, ()))
        return max(0, self.blocks_for(num_tokens) - have)
