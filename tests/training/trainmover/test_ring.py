"""The socket ring: correct sums, and replacing one member opens exactly two connections."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsyskit.training.trainmover.errors import TrainMoverError
from mlsyskit.training.trainmover.ring import SocketRing


def test_all_reduce_sums_by_hand() -> None:
    with SocketRing(3) as ring:
        out = ring.all_reduce([np.array([1.0, 2.0, 3.0, 4.0]), np.ones(4), np.zeros(4)])
    for vec in out:
        assert vec.tolist() == [2.0, 3.0, 4.0, 5.0]


def test_building_a_ring_opens_one_connection_per_member() -> None:
    with SocketRing(5) as ring:
        assert ring.num_connects == 5


@settings(max_examples=8, deadline=None)
@given(n=st.integers(min_value=2, max_value=8), data=st.data())
def test_replacing_any_member_changes_two_connections(n: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(min_value=0, max_value=n - 1))
    values = [np.arange(7.0) * (i + 1) for i in range(n)]
    with SocketRing(n) as ring:
        assert ring.replace(index) == 2
        out = ring.all_reduce(values)
        assert ring.rebuild() == n
    expected = sum(values)
    assert all(np.array_equal(vec, expected) for vec in out)


def test_vectors_shorter_than_the_ring_still_reduce() -> None:
    with SocketRing(4) as ring:
        out = ring.all_reduce([np.array([float(i)]) for i in range(4)])
    assert [v.tolist() for v in out] == [[6.0]] * 4


def test_bad_inputs_raise() -> None:
    with pytest.raises(TrainMoverError, match="at least 2"):
        SocketRing(1)
    with SocketRing(3) as ring:
        with pytest.raises(TrainMoverError, match="cannot replace 3"):
            ring.replace(3)
        with pytest.raises(TrainMoverError, match="needs 3 vectors"):
            ring.all_reduce([np.zeros(2)])
