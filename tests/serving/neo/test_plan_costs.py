"""Slack, step time, interpolated tables and host speeds against hand-computed numbers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from mlsyskit.hardware import get_catalogue
from mlsyskit.serving.metrics import RequestMetrics
from mlsyskit.serving.neo.cost import CostTables, roofline_costs
from mlsyskit.serving.neo.hosts import host_attention_speed
from mlsyskit.serving.neo.loadtest import LatencyStat, LoadPoint, steady_middle, sustainable_rate
from mlsyskit.serving.neo.plan import (
    ExecMode,
    ModeRule,
    SubBatchLoad,
    host_queue_served,
    layer_time,
    pipelining_headroom,
    pipelining_pays,
    slacks,
)

from .fakes import FakeCosts


def test_slacks_follow_the_paper_formula() -> None:
    costs = FakeCosts()
    b0 = SubBatchLoad(num_tokens=100, num_seqs=2, pref_s=0.5, cdec_seqs=2, cdec_tokens=50)
    b1 = SubBatchLoad(num_tokens=3, num_seqs=3, cdec_seqs=3, cdec_tokens=90)
    r0, r1 = slacks(costs, b0, b1)
    # remains[0] = linr(b1) + pref(b0) + gdec(b0) - cdec(b0) = 1 + 0.5 + 0 - 0.2
    assert r0 == pytest.approx(1.3)
    # remains[1] = linr(b0) + 0 - cdec(b1) = 1 - 0.3
    assert r1 == pytest.approx(0.7)


def test_pipelined_layer_time_is_max_per_stage() -> None:
    costs = FakeCosts()
    b0 = SubBatchLoad(num_tokens=10, pref_s=0.5, cdec_seqs=30, cdec_tokens=1)
    b1 = SubBatchLoad(num_tokens=4, cdec_seqs=4, cdec_tokens=1)
    # stage 0: max(linr(b0)=1, cpu(b1)=0.4); stage 1: max(linr(b1)+pref(b0)=1.5, cpu(b0)=3.0)
    assert layer_time(costs, b0, b1, ExecMode.PIPELINED) == pytest.approx(1.0 + 3.0)
    # sequential: linr(all)=1 + pref 0.5 + cdec(34)=3.4
    assert layer_time(costs, b0, b1, ExecMode.SEQUENTIAL) == pytest.approx(4.9)


def test_tables_interpolate_the_roofline(tmp_path: Path) -> None:
    costs = roofline_costs("llama-3-8b", "a10g", "g5-16xlarge")
    tables = CostTables.sample(costs, max_tokens=4096)
    for s in (1, 64, 200, 4096):  # on or between grid points of a piecewise-linear function
        assert tables.linr(s) == pytest.approx(costs.linr(s), rel=0.02)
    assert tables.gdec(3000) == pytest.approx(costs.gdec(3000))  # linear: exact
    assert tables.cdec(3, 5000) == pytest.approx(costs.cdec(3, 5000))  # bilinear of linear
    path = tmp_path / "t.json"
    tables.to_json(path)
    again = CostTables.from_json(path)
    assert again.cdec(5, 777) == pytest.approx(tables.cdec(5, 777))


def test_host_speed_uses_the_per_core_limit() -> None:
    cat = get_catalogue()
    small = host_attention_speed(cat.cpu("g5-2xlarge"))
    # 0.25 x 4 cores x 2.8 GHz x 32 FLOP/cycle = 89.6 GFLOP/s; memory 0.6 x 205 = 123 GB/s
    assert small.flops_per_s == pytest.approx(89.6e9)
    assert small.bytes_per_s == pytest.approx(123e9)
    # Llama-3-8B: 32/8 = 4 FLOP per KV byte -> 22.4 GB/s, compute-bound
    assert small.effective_bytes_per_s(4.0) == pytest.approx(22.4e9)
    big = host_attention_speed(cat.cpu("g5-16xlarge"))
    assert big.effective_bytes_per_s(4.0) == pytest.approx(123e9)  # socket-bound


def test_sustainable_rate_interpolates_the_crossing() -> None:
    pts = [LoadPoint(1.0, 0.01, 0, 0), LoadPoint(2.0, 0.02, 0, 0), LoadPoint(3.0, 0.06, 0, 0)]
    # bound 0.04 lies halfway between 0.02 (rate 2) and 0.06 (rate 3)
    assert sustainable_rate(pts, 0.04) == pytest.approx(2.5)
    assert sustainable_rate(pts, 1.0) == 3.0
    assert math.isclose(sustainable_rate(pts, 0.005), 0.5)


def test_steady_middle_drops_warmup_and_drain_by_arrival() -> None:
    # 10 requests, listed out of arrival order: the first 1 (10%) and last 3 (30%) go
    ms = [RequestMetrics(f"r{i}", float(i), float(i), float(i) + 1.0, 1, 1) for i in range(10)]
    kept = steady_middle(list(reversed(ms)))
    assert [m.request_id for m in kept] == ["r1", "r2", "r3", "r4", "r5", "r6"]


def test_sustainable_rate_reads_the_chosen_statistic() -> None:
    pts = [LoadPoint(1.0, 0.5, 0, 0, 0.01), LoadPoint(2.0, 0.5, 0, 0, 0.03)]
    # the steady mean crosses 0.02 halfway; P90 is above it from the first point
    assert sustainable_rate(pts, 0.02, LatencyStat.STEADY_MEAN) == pytest.approx(1.5)
    assert sustainable_rate(pts, 0.02) == pytest.approx(1.0 * 0.02 / 0.5)


def _hand_tables() -> CostTables:
    """linr 1 ms flat, gdec 0.1 us/token, cdec 0.2 us/token for any count, lnch 0.1 ms."""
    return CostTables(
        num_layers=1, linr_x=(1, 100), linr_s=(1e-3, 1e-3), pref_x=(16,), pref_s=(0.0,),
        gdec_x=(0, 1000), gdec_s=(0.0, 1e-4), cdec_n=(1, 2), cdec_x=(0, 1000),
        cdec_s=((0.0, 2e-4), (0.0, 2e-4)), lnch_s=1e-4, extra_fixed_s=0.0,
        extra_per_seq_s=0.0, link_per_token_s=0.0, source="hand",
    )


@pytest.mark.parametrize(
    ("n_seq", "t_seq", "n_pip", "t_pip", "throughput", "power"),
    [
        (10, 1.0, 18, 1.5, True, False),  # 12 > 10 req/s, but 18 / 2.25 = 8 < 10
        (10, 1.0, 25, 1.5, True, True),  # 25 / 2.25 = 11.1 > 10
        (10, 1.0, 20, 2.0, False, False),  # 2x the requests in 2x the time: no gain
        (0, 0.0, 3, 1.0, True, True),  # nothing on the device: any pipelined step wins
        (5, 1.0, 0, 0.0, False, False),  # nothing to pipeline
    ],
)
def test_mode_rules_by_hand(n_seq: int, t_seq: float, n_pip: int, t_pip: float,
                            throughput: bool, power: bool) -> None:
    assert pipelining_pays(ModeRule.THROUGHPUT, n_seq, t_seq, n_pip, t_pip) is throughput
    assert pipelining_pays(ModeRule.POWER, n_seq, t_seq, n_pip, t_pip) is power
    # a latency target below the pipelined time vetoes it; one at it does not
    assert not pipelining_pays(ModeRule.THROUGHPUT, n_seq, t_seq, n_pip, t_pip, t_pip * 0.99)
    assert pipelining_pays(ModeRule.THROUGHPUT, n_seq, t_seq, n_pip, t_pip, t_pip) is throughput


@pytest.mark.parametrize(
    ("num_host", "throughput", "power"),
    [
        (0, True, True),  # nothing on the host: nothing left idle
        (1, False, False),  # 3 requests in 2.02 ms < 2 in 1.02 ms
        (4, True, False),  # 6 / 2.02 ms = 2970 > 1961 req/s; 6 / 2.02^2 = 1.47 < 1.92 /ms^2
        (8, True, True),  # 10 / 2.02^2 = 2.45 > 1.92
        (9, False, False),  # the ninth breaks b0's slack: one would sit idle
    ],
)
def test_host_queue_served_by_hand(num_host: int, throughput: bool, power: bool) -> None:
    # device: 2 decodes of 100 tokens -> t_g = linr 1 ms + gdec 0.02 ms = 1.02 ms.
    # each host decode (1000 tokens) costs 0.2 ms of host attention, plus 0.1 ms launch per
    # sub-batch. Walking the queue (first into b1, then the sub-batch with more slack):
    # b1, b0, b0, b1, b0, b1, b0, b1 -> after 8: remains = (0.12, 0.10) ms; a 9th in b0 would
    # need 1.1 ms of host time behind 1.02 ms of device time.
    tables = _hand_tables()
    b0 = SubBatchLoad(num_tokens=2, num_seqs=2, gdec_tokens=200)
    assert b0.gpu_time(tables) == pytest.approx(1.02e-3)
    ctx = [1000] * num_host
    assert host_queue_served(tables, b0, ctx, ModeRule.THROUGHPUT) is throughput
    assert host_queue_served(tables, b0, ctx, ModeRule.POWER) is power
    assert b0 == SubBatchLoad(num_tokens=2, num_seqs=2, gdec_tokens=200)  # not mutated


def test_pipelining_headroom_by_hand() -> None:
    # 2 device decodes of 1000 tokens: t_g = linr 1 ms + gdec(2000) 0.2 ms = 1.2 ms.
    # host decodes of 1000 tokens cost 0.2 ms each + 0.1 ms launch per sub-batch:
    # b1 hides behind linr(b0) = 1 ms -> 4 (0.9 ms); b0 behind linr(b1) + gdec(b0) = 1.2 ms
    # -> 5 (1.1 ms). So 11 requests in 1 + 0.2 + 1 = 2.2 ms instead of 2 in 1.2 ms.
    head = pipelining_headroom(_hand_tables(), num_device=2, ctx=1000)
    assert head.t_seq == pytest.approx(1.2e-3)
    assert head.num_host == 9
    assert head.t_pip == pytest.approx(1e-3 + 2e-4 + 1e-3)
    assert head.throughput_gain == pytest.approx((11 / 2.2e-3) / (2 / 1.2e-3))
    assert head.iteration_growth == pytest.approx(2.2 / 1.2)
