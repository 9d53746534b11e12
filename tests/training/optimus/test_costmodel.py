from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlsyskit.training.optimus.config import JobConfig, load_builtin, load_config
from mlsyskit.training.optimus.costmodel import (
    NETWORK_EFFICIENCY,
    NVLINK_EFFICIENCY,
    Calibration,
    CostModel,
    Direction,
    Stream,
    gemm_efficiency,
)
from mlsyskit.training.optimus.models import get_model


def test_gemm_efficiency_curve_points() -> None:
    assert gemm_efficiency(128.0, 1.0) == pytest.approx(0.95)
    assert gemm_efficiency(1000.0, 1.0) == pytest.approx(0.95)
    assert gemm_efficiency(16.0, 1.0) == pytest.approx(0.9)
    assert gemm_efficiency(16.0, 0.5) == pytest.approx(0.45)
    assert gemm_efficiency(4.0, 1.0) == pytest.approx(0.75)  # halfway in log between 1 and 16


def test_gpt175b_layer_has_two_ag_two_rs_of_hand_computed_length() -> None:
    job = load_builtin("vit22b_gpt175b_3072")
    cm = CostModel.for_job(job, Calibration(1.0, 1.0, 1.0))
    spec = get_model("gpt-175b")
    ks = cm.layer_kernels(spec, 2048, 2, 8, Direction.FWD)
    comm = [k for k in ks if k.stream is Stream.COMM]
    assert [k.name for k in comm] == ["ag1", "rs1", "ag2", "rs2"]
    bytes_full = 2 * 2048 * 12288 * 2
    expect = 7 / 8 * bytes_full / (450e9 * NVLINK_EFFICIENCY) + 7 * 1e-6
    assert comm[0].duration_s == pytest.approx(expect)
    assert 250e-6 < expect < 400e-6  # the paper's ~300 us TP bubble
    qkv = next(k for k in ks if k.name == "qkv")
    assert qkv.duration_s == pytest.approx(2 * 4096 * 12288 * 36864 / 8 / (989e12 * 0.95))


def test_backward_with_recompute_repeats_the_forward() -> None:
    job = load_builtin("vit22b_gpt175b_3072")
    cm = CostModel.for_job(job)
    spec = get_model("gpt-175b")
    fwd = cm.layer_time_s(spec, 2048, 2, 8, Direction.FWD)
    bwd = cm.layer_time_s(spec, 2048, 2, 8, Direction.BWD)
    bwd_rc = cm.layer_time_s(spec, 2048, 2, 8, Direction.BWD, recompute=True)
    assert bwd_rc == pytest.approx(bwd + fwd)
    assert 1.5 * fwd < bwd < 2.5 * fwd


def test_p2p_and_dp_scale_with_calibration() -> None:
    job = load_builtin("vit22b_gpt175b_3072")
    base = CostModel.for_job(job, Calibration(1.0, 1.0, 1.0))
    scaled = CostModel.for_job(job, Calibration(1.0, 3.0, 2.0))
    assert scaled.p2p_s(1e6) == pytest.approx(3 * base.p2p_s(1e6))
    assert scaled.dp_collective_s(1e9, 48, 2) == pytest.approx(2 * base.dp_collective_s(1e9, 48, 2))
    assert base.dp_collective_s(1e9, 1, 2) == 0.0


def _small(tmp_path: Path, **changes: Any) -> JobConfig:
    """The shipped small job (A100, NVLink 3 at 300 GB/s, IB HDR at 25 GB/s) with changes."""
    data = yaml.safe_load((resources.files("mlsyskit.training.optimus") / "configs"
                           / "small.yaml").read_text())
    data["llm_plan"].update(dp=2, tp=4)  # the layout the numbers below are worked out for
    for key, value in changes.items():
        if key in data["llm_plan"]:
            data["llm_plan"][key] = value
        else:
            data[key] = value
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def _ag1(job: JobConfig) -> float:
    cm = CostModel.for_job(job, Calibration(1.0, 1.0, 1.0))
    ks = cm.layer_kernels(job.llm.spec, job.llm.seq_len, job.llm_plan.microbatch_size,
                          job.llm_plan.tp, Direction.FWD)
    return next(k.duration_s for k in ks if k.name == "ag1")


def test_tp_group_larger_than_a_node_runs_over_the_network(tmp_path: Path) -> None:
    # GPT-11B (24 heads) at TP 8: 2 x 2048 tokens x 3072 x 2 bytes per all-gather
    num_bytes = 2 * 2048 * 3072 * 2
    in_node = _small(tmp_path, num_gpus=64, tp=8, gpus_per_node=8)
    assert _ag1(in_node) == pytest.approx(7 / 8 * num_bytes / (300e9 * NVLINK_EFFICIENCY)
                                          + 7 * 1e-6)
    # 4 GPUs per node: every TP group spans 2 nodes, so the ring goes at IB HDR's pace
    split = _small(tmp_path, num_gpus=64, tp=8, gpus_per_node=4)
    assert _ag1(split) == pytest.approx(7 / 8 * num_bytes / (25e9 * NETWORK_EFFICIENCY)
                                        + 7 * 2e-6)
    assert _ag1(split) > 5 * _ag1(in_node)  # 180 vs 22.5 GB/s effective


def test_dp_and_p2p_links_follow_the_megatron_placement(tmp_path: Path) -> None:
    cal = Calibration(1.0, 1.0, 1.0)
    # small: rank = (p * 2 + d) * 4 + t, 8 GPUs per node -> a stage's 2 DP replicas share a
    # node (DP over NVLink) and every pipeline hop changes node (P2P over IB)
    cm = CostModel.for_job(_small(tmp_path), cal)
    assert cm.dp_collective_s(1e9, 2, 2) == pytest.approx(
        0.5 * 2e9 / (300e9 * NVLINK_EFFICIENCY) + 1e-6)
    assert cm.p2p_s(1e6) == pytest.approx(2e-6 + 1e6 / (25e9 * NETWORK_EFFICIENCY))
    # 4 GPUs per node: each TP group is a node, DP replicas sit on different nodes
    cm4 = CostModel.for_job(_small(tmp_path, gpus_per_node=4), cal)
    assert cm4.dp_collective_s(1e9, 2, 2) == pytest.approx(
        0.5 * 2e9 / (25e9 * NETWORK_EFFICIENCY) + 2e-6)
    # 32 GPUs per node: the whole job is one node, every link is NVLink
    cm32 = CostModel.for_job(_small(tmp_path, gpus_per_node=32), cal)
    assert cm32.p2p_s(1e6) == pytest.approx(1e-6 + 1e6 / (300e9 * NVLINK_EFFICIENCY))


def test_paper_configs_keep_the_paper_layout() -> None:
    # TP 8 = one node: TP over NVLink, DP and PP over the network, exactly as without a
    # placement (the costs the calibration was fitted on)
    for name in ("vit22b_gpt175b_1536", "vit22b_gpt175b_3072", "dualenc_gpt175b_512"):
        job = load_builtin(name)
        cm = CostModel.for_job(job)
        legacy = dataclasses.replace(cm, placement=None)
        assert cm.placement is not None and not cm.tp_crosses_nodes(8)
        spec = job.llm.spec
        for tp in (1, 2, 4, 8):
            assert cm.layer_kernels(spec, 2048, 2, tp, Direction.BWD, True) == \
                legacy.layer_kernels(spec, 2048, 2, tp, Direction.BWD, True)
        assert cm.p2p_s(1e7) == legacy.p2p_s(1e7)
        for dp in (job.llm_plan.dp, 2 * job.llm_plan.dp, 8 * job.llm_plan.dp):
            assert cm.dp_collective_s(1e9, dp, 4) == legacy.dp_collective_s(1e9, dp, 4)
