from __future__ import annotations

import pytest

from mlsyskit.training.optimus.gaps import gaps_from_busy


def test_find_and_occupy_first_fit() -> None:
    gaps = gaps_from_busy([(1.0, 2.0), (2.5, 4.0)], 0.0, 5.0)
    assert list(zip(gaps.starts, gaps.ends, strict=True)) == [(0.0, 1.0), (2.0, 2.5), (4.0, 5.0)]
    assert gaps.find(0.2, 0.5, 10.0) == pytest.approx(0.2)
    assert gaps.find(0.8, 0.5, 10.0) == pytest.approx(2.0)  # does not fit before 1.0
    assert gaps.find(0.8, 0.6, 10.0) == pytest.approx(4.0)
    assert gaps.find(0.8, 0.6, 4.5) is None  # deadline
    gaps.occupy(2.0, 2.3)
    assert gaps.find(0.8, 0.3, 10.0) == pytest.approx(4.0)
    assert gaps.total() == pytest.approx(1.0 + 0.2 + 1.0)
    with pytest.raises(ValueError):
        gaps.occupy(0.5, 1.5)
