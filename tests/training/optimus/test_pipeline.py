from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsyskit.training.optimus.costmodel import Direction, Kernel, Stream
from mlsyskit.training.optimus.pipeline import (
    BubbleType,
    PipelineSpec,
    StageWork,
    bubble_breakdown,
    bubble_intervals,
    latest_fwd_starts,
    op_order,
    simulate,
)


def _spec(pp: int, v: int, n: int, f: float = 1.0, b: float = 2.0, lag: float = 0.0,
          tp_comm: float = 0.0) -> PipelineSpec:
    fwd = [Kernel("f", Stream.COMPUTE, f)]
    if tp_comm:
        fwd.append(Kernel("ag", Stream.COMM, tp_comm))
    st = StageWork(tuple(fwd), (Kernel("b", Stream.COMPUTE, b),), 1.0, 1.0)
    return PipelineSpec(pp, v, n, (st,) * (pp * v), lag, interleaved=v > 1)


@pytest.mark.parametrize(("pp", "n"), [(2, 4), (4, 8), (4, 4), (3, 7)])
def test_1f1b_makespan_is_n_plus_p_minus_1_slots(pp: int, n: int) -> None:
    tl = simulate(_spec(pp, 1, n), [0.0] * pp)
    assert max(tl.last_end(d) for d in range(pp)) == pytest.approx((n + pp - 1) * 3.0)


def test_interleaved_warmup_counts_follow_megatron() -> None:
    spec = _spec(4, 2, 8)
    for d in range(4):
        order = op_order(spec, d)
        warm = 0
        for op in order:
            if op.direction is Direction.BWD:
                break
            warm += 1
        assert warm == (4 - d - 1) * 2 + (2 - 1) * 4 + 1  # warm-up + first steady forward
        assert len(order) == 2 * 8 * 2


def test_interleaving_shrinks_the_bubble() -> None:
    plain = simulate(_spec(4, 1, 8, 2.0, 4.0), [0.0] * 4)
    inter = simulate(_spec(4, 2, 8, 1.0, 2.0), [0.0] * 4)
    t_plain = max(plain.last_end(d) for d in range(4))
    t_inter = max(inter.last_end(d) for d in range(4))
    assert t_plain == pytest.approx((8 + 3) * 6.0)
    assert t_inter < t_plain


def test_bubble_breakdown_accounts_for_all_idle_time() -> None:
    pp, n = 4, 8
    spec = _spec(pp, 1, n, 1.0, 2.0, lag=0.1, tp_comm=0.25)
    ag, rs = [0.5] * pp, [0.7] * pp
    tl = simulate(spec, ag)
    makespan = max(tl.last_end(d) + rs[d] for d in range(pp))
    bub = bubble_breakdown(tl, ag, rs, makespan)
    busy_compute = n * (1.0 + 2.0)
    assert sum(bub.values()) == pytest.approx(makespan - busy_compute)
    assert bub[BubbleType.TP] == pytest.approx(n * 0.25)
    assert bub[BubbleType.DP_ALL_GATHER] == pytest.approx(0.5)
    assert bub[BubbleType.DP_REDUCE_SCATTER] == pytest.approx(0.7)


@settings(max_examples=40, deadline=None)
@given(pp=st.integers(2, 4), v=st.integers(1, 3), k=st.integers(1, 3),
       f=st.floats(0.5, 2.0), b=st.floats(0.5, 3.0), lag=st.floats(0.0, 0.5),
       tails=st.lists(st.floats(0.0, 2.0), min_size=4, max_size=4))
def test_deferred_forwards_keep_the_llm_end(pp: int, v: int, k: int, f: float, b: float,
                                            lag: float, tails: list[float]) -> None:
    """Warm-up adjustment: every first forward starts at its latest start, F_i only move
    later, and no device ends later than in the as-soon-as-possible timeline."""
    spec = _spec(pp, v, pp * k, f, b, lag)
    release = [0.1 * d for d in range(pp)]
    tl = simulate(spec, release)
    tail = tails[:pp]
    latest = latest_fwd_starts(tl, tail)
    late = simulate(spec, release, latest)
    end = max(tl.last_end(d) + tail[d] for d in range(pp))
    assert max(late.last_end(d) + tail[d] for d in range(pp)) <= end + 1e-9
    for i in range(spec.num_mb):
        assert late.fwd_dependency(i) == pytest.approx(latest[i])
        assert late.fwd_dependency(i) >= tl.fwd_dependency(i) - 1e-9


def test_deferred_forwards_hand_computed_1f1b() -> None:
    """2 stages, 2 microbatches, f=1, b=2, no lag.  ASAP: stage 0 runs F0 0-1, F1 1-2,
    B0 4-6, B1 7-9; stage 1 runs F0 1-2, B0 2-4, F1 4-5, B1 5-7.  Stage 1 cannot start F1
    before 4 (busy with B0), so F1 on stage 0 may start as late as 3 (ending as stage 1
    frees up, and before B0 at 4) without moving the end."""
    tl = simulate(_spec(2, 1, 2), [0.0, 0.0])
    assert [tl.fwd_dependency(i) for i in range(2)] == [0.0, 1.0]
    assert latest_fwd_starts(tl, [0.0, 0.0]) == pytest.approx([0.0, 3.0])
    late = simulate(_spec(2, 1, 2), [0.0, 0.0], [0.0, 3.0])
    assert max(late.last_end(d) for d in range(2)) == pytest.approx(9.0)


def test_bubble_intervals_are_labelled_per_gpu_and_add_up() -> None:
    """2 stages, 2 microbatches, f = 1 (+ 0.25 TP collective), b = 2, no lag; AG 0.5 and
    RS 0.7 per device.  Stage 1: F0 1.75-3, B0 3-5, F1 5-6.25, B1 6.25-8.25; stage 0: F0
    0.5-1.75, F1 1.75-3, B0 5-7, B1 8.25-10.25, so stage 0 idles 3-5 and 7-8.25 (PP
    other) and reduce-scatters 10.25-10.95."""
    spec = _spec(2, 1, 2, 1.0, 2.0, tp_comm=0.25)
    tl = simulate(spec, [0.5, 0.5])
    makespan = max(tl.last_end(d) + 0.7 for d in range(2))
    per_gpu = bubble_intervals(tl, [0.5, 0.5], [0.7, 0.7], makespan)
    dev0 = per_gpu[0]
    assert (0.0, 0.5, BubbleType.DP_ALL_GATHER) in dev0
    assert [b[:2] for b in dev0 if b[2] is BubbleType.PP_OTHER] == [(3.0, 5.0), (7.0, 8.25)]
    assert [b[:2] for b in dev0 if b[2] is BubbleType.TP] == [(1.5, 1.75), (2.75, 3.0)]
    assert (10.25, pytest.approx(10.95), BubbleType.DP_REDUCE_SCATTER) in dev0
    assert makespan == pytest.approx(10.95)
    for d, items in enumerate(per_gpu):
        # disjoint, and never while the device computes
        for a, b in itertools.pairwise(items):
            assert b[0] >= a[1] - 1e-12
        busy = [(s, e) for s, e, k, _ in tl.kernels(d) if k.stream is Stream.COMPUTE]
        assert not any(s < be and e > bs for s, e, _ in items for bs, be in busy)
        # everything that is not compute is some labelled bubble
        assert sum(e - s for s, e, _ in items) == pytest.approx(makespan - 2 * (1.0 + 2.0))
    avg = bubble_breakdown(tl, [0.5, 0.5], [0.7, 0.7], makespan)
    for kind in BubbleType:
        total = sum(e - s for items in per_gpu for s, e, k in items if k is kind) / 2
        assert avg[kind] == pytest.approx(total)
