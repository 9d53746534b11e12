from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlsyskit.errors import ConfigError
from mlsyskit.results import BenchResult, Target


@pytest.mark.parametrize(
    ("text", "value", "expected"),
    [
        (">= 2.0", 2.0, True),
        (">= 2.0", 1.99, False),
        ("<= 0.15", 0.2, False),
        ("> 1", 1.0, False),
        ("< 1", 0.5, True),
        ("== 2", 2.0, True),
        ("in [0.5, 1.1]", 0.79, True),
        ("in [0.5, 1.1]", 1.2, False),
        (">= 1e-4", 1e-3, True),
    ],
)
def test_target_holds(text: str, value: float, expected: bool) -> None:
    assert Target(text).holds(value) is expected


def test_nan_never_meets_a_target() -> None:
    assert not Target(">= 0").holds(math.nan)


@pytest.mark.parametrize("text", ["about 2", ">=", "in [1 2]", "2.0"])
def test_bad_target_is_rejected(text: str) -> None:
    with pytest.raises(ConfigError, match="bad target"):
        Target(text)


@given(lo=st.floats(-1e6, 1e6), width=st.floats(0, 1e6), x=st.floats(-3e6, 3e6))
def test_interval_target_agrees_with_comparisons(lo: float, width: float, x: float) -> None:
    hi = lo + width
    assert Target(f"in [{lo!r}, {hi!r}]").holds(x) == (lo <= x <= hi)


def test_missing_metric_does_not_meet_its_target() -> None:
    result = BenchResult(metrics={"a": 3.0}, targets={"a": ">= 2", "b": ">= 1"})
    assert result.target_status() == {"a": True, "b": False}
