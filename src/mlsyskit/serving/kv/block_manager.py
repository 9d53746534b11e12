"""Paged KV block accounting with two pools: device (GPU, or "device" memory here) and host.

The block manager owns block *ids* only; the tensors live in the executor (the real one keeps a
:class:`~mlsyskit.serving.model.PagedKVCache` per pool, the simulated one keeps none). A request's
KV lives wholly in one pool at a time: on the device while it runs, on the host while swapped.
When the device pool is full, :meth:`BlockManager.allocate` returns ``None`` and changes nothing;
the scheduler decides whom to preempt (mechanism here, policy there).
"""

from __future__ import annotations

from mlsyskit.errors import ConfigError
from mlsyskit.serving.errors import KVCacheError


class BlockPool:
    """A fixed set of block ids ``0..num_blocks-1`` with a free list (LIFO, so reuse is local)."""

    __slots__ = ("_free", "num_blocks")

    def __init__(self, num_blocks: int) -> None:
        if num_blocks < 0:
            raise ConfigError(f"a block pool needs >= 0 blocks; got {num_blocks}")
        self.num_blocks = num_blocks
        self._free = list(range(num_blocks - 1, -1, -1))

    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def num_used(self) -> int:
        return self.num_blocks - len(self._free)

    def take(self, n: int) -> list[int]:
        """``n`` free block ids (the caller checked ``num_free``)."""
        if n > len(self._free):
            raise KVCacheError(f"asked for {n} blocks with {len(self._free)} free")
        if n == 0:
            return []
        taken = self._free[-n:]
        del self._free[-n:]
        taken.reverse()  # lowest ids first
        return taken

    def give_back(self, blocks: list[int]) -> None:
        self._free.extend(blocks)

    def free_ids(self) -> list[int]:
        return list(self._free)


class BlockManager:
    """Block tables per request over a device pool and a host pool.

    Parameters
    ----------
    num_device_blocks
        Blocks in the device pool (the KV capacity the scheduler packs requests into).
    num_host_blocks
        Blocks in the host pool (swap space); 0 disables swapping.
    block_size
        Tokens per block.
    """

    def __init__(self, num_device_blocks: int, num_host_blocks: int, block_size: int) -> None:
        if block_size < 1:
            raise ConfigError(f"block_size must be >= 1; got {block_size}")
        self.block_size = block_size
        self.device = BlockPool(num_device_blocks)
        self.host = BlockPool(num_host_blocks)
        self._device_tables: dict[str, list[int]] = {}
        self._host_tables: dict[str, list[int]] = {}

    # --- queries -------------------------------------------------------------------------
    @property
    def num_free_device_blocks(self) -> int:
        return len(self.device._free)

    @property
    def num_free_host_blocks(self) -> int:
        return len(self.host._free)

    def blocks_for(self, num_tokens: int) -> int:
        """Blocks needed to hold ``num_tokens`` tokens."""
        return -(-num_tokens // self.block_size)

    @property
    def device_tables(self) -> dict[str, list[int]]:
        """Device block tables by request id (read-only: the scheduler's fast path)."""
        return self._device_tables

    def device_blocks_of(self, request_id: str) -> list[int]:
        """The device block table of a request (empty if it holds none). Do not mutate it."""
        return self._device_tables.get(request_id, [])

    def host_blocks_of(self, request_id: str) -> list[int]:
        return self._host_tables.get(request_id, [])

    def num_blocks_to_grow(self, request_id: str, num_tokens: int) -> int:
        """Device blocks :meth:`allocate` would take to cover ``num_tokens`` tokens."""
        have = len(self._device_tables.get(request_id, ()))
        return max(0, -(-num_tokens // self.block_size) - have)

    # --- mutations -----------------------------------------------------------------------
    def allocate(self, request_id: str, num_tokens: int) -> list[int] | None:
        """Grow the request's device table to cover ``num_tokens`` tokens.

        Returns the table, or ``None`` (and changes nothing) when the device pool has too few
        free blocks. A request whose KV is on the host must be swapped in first.
        """
        table = self._device_tables.get(request_id)
        if table is None:
            if request_id in self._host_tables:
                raise KVCacheError(f"request {request_id} is swapped out; swap it in first")
            table = self._device_tables[request_id] = []
        need = -(-num_tokens // self.block_size) - len(table)
        if need > 0:
            free = self.device._free
            if need > len(free):
                if not table:
                    del self._device_tables[request_id]
                return None
            table.extend(free[-1 : -need - 1 : -1])  # lowest ids first
            del free[-need:]
        return table

    def free(self, request_id: str) -> int:
        """Release every block of a request in both pools; returns how many were released."""
        released = 0
        table = self._device_tables.pop(request_id, None)
        if table:
            self.device.give_back(table)
            released += len(table)
        table = self._host_tables.pop(request_id, None)
        if table:
            self.host.give_back(table)
            released += len(table)
        return released

    def can_swap_out(self, request_id: str) -> bool:
        n = len(self._device_tables.get(request_id, ()))
        return 0 < n <= self.host.num_free

    def swap_out(self, request_id: str) -> list[tuple[int, int]]:
        """Move a request's KV to the host pool; returns the (device, host) block copies to do."""
        return self._move(request_id, to_host=True)

    def can_swap_in(self, request_id: str, num_tokens: int = 0) -> bool:
        """Whether the request's host KV (and room for ``num_tokens`` tokens) fits the device."""
        n = len(self._host_tables.get(request_id, ()))
        return n > 0 and max(n, self.blocks_for(num_tokens)) <= self.device.num_free

    def swap_in(self, request_id: str) -> list[tuple[int, int]]:
        """Move a request's KV back to the device; returns the (host, device) block copies."""
        return self._move(request_id, to_host=False)

    def _move(self, request_id: str, *, to_host: bool) -> list[tuple[int, int]]:
        """Move a request's whole block table between pools; one mechanism for both directions."""
        src_tables, dst_tables = (
            (self._device_tables, self._host_tables)
            if to_host
            else (self._host_tables, self._device_tables)
        )
        src_pool, dst_pool = (self.device, self.host) if to_host else (self.host, self.device)
        src_name, verb, dst_name = (
            ("device", "swap out", "host") if to_host else ("host", "swap in", "device")
        )
        table = src_tables.get(request_id)
        if not table:
            raise KVCacheError(f"request {request_id} has no {src_name} blocks to {verb}")
        if len(table) > dst_pool.num_free:
            raise KVCacheError(
                f"request {request_id}: {len(table)} blocks to {verb}, "
                f"{dst_pool.num_free} free on the {dst_name}"
            )
        new_blocks = dst_pool.take(len(table))
        del src_tables[request_id]
        src_pool.give_back(table)
        dst_tables[request_id] = new_blocks
        return list(zip(table, new_blocks, strict=True))

    # --- checking ------------------------------------------------------------------------
    def check_invariants(self) -> None:
        """Raise :class:`KVCacheError` if blocks leaked, were handed out twice or miscounted."""
        for name, pool, tables in (
            ("device", self.device, self._device_tables),
            ("host", self.host, self._host_tables),
        ):
            held = [b for t in tables.values() for b in t]
            free = pool.free_ids()
            everything = held + free
            if len(set(everything)) != len(everything):
                raise KVCacheError(f"{name} pool: a block is held twice or both held and free")
            if sorted(everything) != list(range(pool.num_blocks)):
                raise KVCacheError(f"{name} pool: blocks leaked or invented")
        both = set(self._device_tables) & set(self._host_tables)
        if both:
            raise KVCacheError(f"requests with KV in both pools: {sorted(both)}")
