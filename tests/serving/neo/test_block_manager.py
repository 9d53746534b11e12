"""Host-pool growth for requests that decode on the host."""

from __future__ import annotations

import pytest

from mlsyskit.serving.errors import KVCacheError
from mlsyskit.serving.neo.block_manager import NeoBlockManager


def test_host_tables_grow_and_free() -> None:
    bm = NeoBlockManager(num_device_blocks=4, num_host_blocks=5, block_size=4)
    assert bm.allocate_host("a", 9) == [0, 1, 2]  # ceil(9 / 4) = 3 blocks, lowest ids first
    assert bm.on_host("a") and bm.num_blocks_to_grow_host("a", 13) == 1
    assert bm.allocate_host("a", 13) == [0, 1, 2, 3]
    assert bm.allocate_host("b", 9) is None  # needs 3, 1 free: nothing changes
    assert not bm.on_host("b") and bm.num_free_host_blocks == 1
    bm.check_invariants()
    assert bm.free("a") == 4
    bm.check_invariants()


def test_a_device_request_cannot_grow_on_the_host() -> None:
    bm = NeoBlockManager(num_device_blocks=4, num_host_blocks=4, block_size=4)
    bm.allocate("a", 4)
    with pytest.raises(KVCacheError, match="swap it out"):
        bm.allocate_host("a", 8)
    bm.swap_out("a")
    assert bm.allocate_host("a", 8) is not None  # after the swap it decodes on the host
    bm.check_invariants()
