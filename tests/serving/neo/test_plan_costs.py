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
from mlsyskit.serving.neo.plan import ExecMode, SubBatchLoad, layer_time, slacks

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
