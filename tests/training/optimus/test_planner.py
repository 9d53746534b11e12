from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsyskit.training.optimus.config import load_builtin, load_config
from mlsyskit.training.optimus.errors import OptimusConfigError
from mlsyskit.training.optimus.planner import (
    Rejection,
    compositions,
    enumerate_plans,
    feasible_plans,
    memory_estimate,
    memory_overhead,
    num_compositions,
    rejected_plans,
    require_plans,
)

from .conftest import make_job


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


def test_encoder_tp_must_divide_the_encoder_heads() -> None:
    # small at TP 4: ViT-3B has 18 heads, the LLM plan PP4 TP4 gives 3 x 3 encoder plans;
    # the three with TP_enc = 4 cannot split 18 heads and are filtered like the memory filter
    base = load_builtin("small")
    job = dataclasses.replace(base, llm_plan=dataclasses.replace(base.llm_plan, dp=2, tp=4))
    assert job.encoders[0].spec.num_heads == 18
    rejected = {p.label(): why for p, why in rejected_plans(job)}
    assert {label for label, why in rejected.items() if why is Rejection.HEADS} == {
        "DP8 PP1 TP4", "DP4 PP2 TP4", "DP2 PP4 TP4"}
    feasible = feasible_plans(job)
    assert feasible and all(18 % p.tp == 0 for p in feasible)
    assert "DP2 PP4 TP4" not in {p.label() for p in feasible}  # the plan it used to pick


@settings(max_examples=40, deadline=None)
@given(heads=st.lists(st.sampled_from([1, 2, 3, 4, 6, 8, 12, 18, 24]), min_size=1, max_size=3),
       pp=st.sampled_from([1, 2, 4]), tp=st.sampled_from([1, 2, 4, 8]))
def test_feasible_plans_split_every_encoders_heads(heads: list[int], pp: int, tp: int) -> None:
    job = make_job(pp=pp, tp=tp, num_mb=2 * pp, num_encoders=len(heads))
    encs = tuple(
        dataclasses.replace(e, spec=dataclasses.replace(e.spec, num_heads=h))
        for e, h in zip(job.encoders, heads, strict=True)
    )
    job = dataclasses.replace(job, encoders=encs)
    plans = enumerate_plans(job)
    feasible = feasible_plans(job)
    rejected = rejected_plans(job)
    assert len(feasible) + len(rejected) == len(plans)  # a partition of the enumeration
    assert all(all(h % p.tp == 0 for h in heads) for p in feasible)
    for p, why in rejected:
        assert (why is Rejection.HEADS) == any(h % p.tp for h in heads)
    assert all(why is not Rejection.HEADS for p, why in rejected if p.tp == 1)


def test_no_feasible_plan_is_a_config_error_naming_the_reasons(tmp_path: Path) -> None:
    cfg = tmp_path / "oom.yaml"
    cfg.write_text("gpu: h100-sxm\nnum_gpus: 8\nencoders: [{model: vit-22b}]\n"
                   "llm: {model: gpt-175b}\nllm_plan: {dp: 1, pp: 1, tp: 8, num_microbatches: 8}\n")
    job = load_config(cfg)
    with pytest.raises(OptimusConfigError, match=r"oom.yaml: .*no encoder plan fits") as info:
        require_plans(job, str(cfg))
    assert "does not fit in GPU memory: 4" in str(info.value)  # TP_enc 1, 2, 4, 8 all too big
    assert info.value.exit_code == 2
    assert require_plans(load_builtin("small")) == feasible_plans(load_builtin("small"))
