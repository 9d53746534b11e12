from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mlsyskit.serving.errors import KVCacheError
from mlsyskit.serving.kv import BlockManager


def test_allocate_grows_by_whole_blocks_and_reuses_freed_ones() -> None:
    bm = BlockManager(num_device_blocks=4, num_host_blocks=2, block_size=4)
    assert bm.allocate("a", 5) == [0, 1]  # ceil(5/4) = 2 blocks, lowest ids first
    assert bm.allocate("a", 8) == [0, 1]  # still fits
    assert bm.allocate("a", 9) == [0, 1, 2]
    assert bm.num_free_device_blocks == 1
    assert bm.allocate("b", 8) is None  # needs 2, 1 free: nothing changes
    assert bm.num_free_device_blocks == 1 and bm.device_blocks_of("b") == []
    assert bm.free("a") == 3
    assert bm.num_free_device_blocks == 4
    bm.check_invariants()


def test_swap_out_and_in_moves_every_block_and_maps_them() -> None:
    bm = BlockManager(num_device_blocks=4, num_host_blocks=3, block_size=2)
    bm.allocate("a", 6)
    mapping = bm.swap_out("a")
    assert [d for d, _ in mapping] == [0, 1, 2]
    assert bm.num_free_device_blocks == 4 and bm.num_free_host_blocks == 0
    assert bm.device_blocks_of("a") == [] and len(bm.host_blocks_of("a")) == 3
    with pytest.raises(KVCacheError):
        bm.allocate("a", 7)  # must be swapped in first
    back = bm.swap_in("a")
    assert [h for h, _ in back] == [h for _, h in mapping]
    assert bm.num_free_host_blocks == 3 and len(bm.device_blocks_of("a")) == 3
    bm.check_invariants()


def test_swap_out_without_host_room_raises() -> None:
    bm = BlockManager(num_device_blocks=4, num_host_blocks=1, block_size=2)
    bm.allocate("a", 4)
    assert not bm.can_swap_out("a")
    with pytest.raises(KVCacheError, match="1 free on the host"):
        bm.swap_out("a")


class BlockManagerMachine(RuleBasedStateMachine):
    """Random allocate / grow / free / swap sequences keep the pools consistent."""

    def __init__(self) -> None:
        super().__init__()
        self.bm = BlockManager(num_device_blocks=12, num_host_blocks=6, block_size=4)
        self.tokens: dict[str, int] = {}  # requests on the device -> tokens covered
        self.swapped: dict[str, int] = {}

    @rule(rid=st.sampled_from("abcdefg"), n=st.integers(1, 30))
    def allocate(self, rid: str, n: int) -> None:
        if rid in self.swapped:
            return
        want = max(n, self.tokens.get(rid, 0))
        free_before = self.bm.num_free_device_blocks
        need = self.bm.num_blocks_to_grow(rid, want)
        table = self.bm.allocate(rid, want)
        if need > free_before:
            assert table is None
            assert self.bm.num_free_device_blocks == free_before
        else:
            assert table is not None and len(table) == -(-want // 4)
            self.tokens[rid] = want

    @precondition(lambda self: self.tokens or self.swapped)
    @rule(data=st.data())
    def free(self, data: st.DataObject) -> None:
        rid = data.draw(st.sampled_from(sorted(self.tokens) + sorted(self.swapped)))
        expected = -(-(self.tokens.pop(rid, 0) or self.swapped.pop(rid, 0)) // 4)
        assert self.bm.free(rid) == expected

    @precondition(lambda self: self.tokens)
    @rule(data=st.data())
    def swap_out(self, data: st.DataObject) -> None:
        rid = data.draw(st.sampled_from(sorted(self.tokens)))
        if self.bm.can_swap_out(rid):
            mapping = self.bm.swap_out(rid)
            assert len(mapping) == -(-self.tokens[rid] // 4)
            self.swapped[rid] = self.tokens.pop(rid)

    @precondition(lambda self: self.swapped)
    @rule(data=st.data())
    def swap_in(self, data: st.DataObject) -> None:
        rid = data.draw(st.sampled_from(sorted(self.swapped)))
        if self.bm.can_swap_in(rid):
            self.bm.swap_in(rid)
            self.tokens[rid] = self.swapped.pop(rid)

    @invariant()
    def pools_are_consistent(self) -> None:
        self.bm.check_invariants()
        used_device = sum(-(-t // 4) for t in self.tokens.values())
        used_host = sum(-(-t // 4) for t in self.swapped.values())
        assert self.bm.device.num_used == used_device
        assert self.bm.host.num_used == used_host


TestBlockManagerMachine = BlockManagerMachine.TestCase
TestBlockManagerMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
