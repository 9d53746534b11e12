from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsyskit.training.optimus.config import load_builtin
from mlsyskit.training.optimus.planner import (
    compositions,
    enumerate_plans,
    feasible_plans,
    memory_estimate,
    memory_overhead,
    num_compositions,
)


def test_plans_divide_llm_plan() -> None:
    job = load_builtin("vit22b_gpt175b_3072")
    plans = enumerate_plans(job)
    assert len(plans) == 16  # 4 divisors of PP8 x 4 divisors of TP8
    for p in plans:
        assert 8 % p.pp == 0 and 8 % p.tp == 0
        assert p.dp * p.pp * p.tp == 3072
        assert p.pipelines_per_llm == p.dp // 48


def test_memory_filter_drops_unsharded_vit22b() -> None:
    job = load_builtin("vit22b_gpt175b_3072")
    labels = {p.label() for p in feasible_plans(job)}
    assert "DP3072 PP1 TP1" not in labels  # 22B x 6 bytes = 132 GB on one GPU
    assert "DP48 PP8 TP8" in labels


def test_memory_overhead_formula() -> None:
    job = load_builtin("vit22b_gpt175b_3072")
    plan = next(p for p in enumerate_plans(job) if (p.pp, p.tp) == (1, 8))
    phi_enc = 48 * (4 * 6144**2 + 2 * 6144 * 24576)
    assert memory_overhead(job, plan) == pytest.approx(6 * (384 - 48) * phi_enc / 3072)
    est = memory_estimate(job, plan)
    assert est.encoder_state == pytest.approx(6 * phi_enc / 8)


@pytest.mark.parametrize(("total", "parts"), [(8, 2), (16, 4), (5, 5), (6, 1)])
def test_compositions_are_complete(total: int, parts: int) -> None:
    comps = list(compositions(total, parts))
    assert len(comps) == num_compositions(total, parts)
    assert len(set(comps)) == len(comps)
    assert all(sum(c) == total and min(c) >= 1 for c in comps)
    if (total, parts) == (8, 2):
        assert comps[0] == (1, 7) and comps[-1] == (7, 1)  # the paper's 7 options


@settings(max_examples=30, deadline=None)
@given(total=st.integers(1, 12), parts=st.integers(1, 5))
def test_balanced_first_order_yields_every_composition_once(total: int, parts: int) -> None:
    from mlsyskit.training.optimus.planner import compositions_balanced_first

    got = list(compositions_balanced_first(total, parts))
    assert len(got) == len(set(got)) == num_compositions(total, parts)
    assert set(got) == set(compositions(total, parts))
    if got:  # the most even split comes first, spreads never shrink
        spreads = [max(c) - min(c) for c in got]
        assert spreads[0] == (0 if total % parts == 0 else 1)


def test_balanced_first_starts_with_the_even_split() -> None:
    from itertools import islice

    from mlsyskit.training.optimus.planner import compositions_balanced_first

    assert list(islice(compositions_balanced_first(32, 8), 2)) == [
        (4,) * 8, (3, 3, 3, 3, 5, 5, 5, 5)]
