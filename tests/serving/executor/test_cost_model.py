from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from mlsyskit.errors import ConfigError, DataError
from mlsyskit.hardware import get_catalogue
from mlsyskit.serving.executor import CostModel, CostParams, SimExecutor, device_kv_blocks
from mlsyskit.serving.model import get_model_config
from mlsyskit.serving.plan import StepPlan


@dataclass(frozen=True)
class Shape:
    name: str = "toy"
    vocab_size: int = 10
    hidden_size: int = 4
    num_layers: int = 2
    num_heads: int = 2
    head_dim: int = 2
    dtype_bytes: int = 2
    num_params: int = 1080  # 2 * 40 embedding/head + 1000 in layers
    weight_bytes: int = 2160
    kv_bytes_per_token: int = 32  # 2 * 2 layers * 2 kv heads * 2 dims * 2 bytes


PARAMS = CostParams(
    overhead_s=1.0, s_per_seq=0.5, s_per_flop=0.001, s_per_attn_flop=0.01, s_per_byte=0.0001,
    s_per_link_byte=0.1, s_per_comm_byte=0.01, comm_latency_s=0.2,
)


def test_step_time_is_the_roofline_by_hand() -> None:
    cost = CostModel(Shape(), PARAMS)
    # 3 tokens over 2 seqs, contexts 5 + 1, pairs 2*5 + 1*1 = 11
    # dense = 2*1000*3 + 2*40*2 = 6160 flops -> 6.16 s; attention = 4*2*2*2*11 = 352 -> 3.52 s
    # memory = (2160 + 32*6) bytes -> 0.2352 s; compute wins
    assert cost.step_time(3, 2, 6, 11) == pytest.approx(1.0 + 2 * 0.5 + 6.16 + 3.52)
    # swapping one 4-token block each way adds 8 tokens * 32 bytes * 0.1 s
    assert cost.step_time(3, 2, 6, 11, 8) == pytest.approx(11.68 + 25.6)
    assert cost.step_time(0, 0, 0, 0) == 0.0


def test_tensor_parallel_halves_work_and_adds_all_reduces() -> None:
    cost = CostModel(Shape(), PARAMS, tp=2)
    # compute halves (4.84 s); all-reduce: 2 per layer * 2 layers * 2*(1/2) * 4 dims * 2 bytes
    # = 32 bytes per token -> 3 tokens * 32 * 0.01 s, plus 4 calls * 0.2 s latency
    assert cost.step_time(3, 2, 6, 11) == pytest.approx(2.0 + 4.84 + 0.96 + 0.8)


def test_memory_bound_decode_reads_weights_and_kv() -> None:
    params = CostParams(overhead_s=0, s_per_seq=0, s_per_flop=1e-9, s_per_attn_flop=1e-9,
                        s_per_byte=1e-3)
    cost = CostModel(Shape(), params)
    assert cost.step_time(1, 1, 100, 100) == pytest.approx((2160 + 3200) * 1e-3)


def test_from_hardware_uses_catalogue_numbers() -> None:
    a10g = get_catalogue().gpu("a10g")
    p = CostParams.from_hardware("a10g", flops_efficiency=0.5, bandwidth_efficiency=1.0)
    assert p.s_per_flop == pytest.approx(1 / (70e12 * 0.5))
    assert p.s_per_byte == pytest.approx(1 / a10g.mem_bw_bytes_per_s)
    assert p.s_per_link_byte == pytest.approx(1 / (get_catalogue().link("pcie-gen4-x16")
                                                   .bandwidth_bytes_per_s * 0.8))


def test_kv_blocks_from_memory_and_refusal_when_weights_do_not_fit() -> None:
    cfg = get_model_config("llama-3-8b")
    gib = 1024**3
    expected = int((24 * gib * 0.9 - cfg.weight_bytes - gib) // (131072 * 16))
    assert device_kv_blocks(cfg, get_catalogue().gpu("a10g"), block_size=16) == expected
    big = get_model_config("llama-3.1-70b")
    with pytest.raises(ConfigError, match="does not fit"):
        device_kv_blocks(big, get_catalogue().gpu("h100-sxm"), block_size=16)
    assert device_kv_blocks(big, get_catalogue().gpu("h100-sxm"), block_size=16, tp=2) > 0


def test_sim_executor_charges_the_cost_model(tmp_path: Path) -> None:
    ex = SimExecutor(CostModel(Shape(), PARAMS), num_device_blocks=4, num_host_blocks=4,
                     block_size=4)
    plan = StepPlan(1, [], [], [], [], swap_out=[(0, 0)], num_batched_tokens=0)
    assert ex.execute(plan).duration_s == pytest.approx(1.0 + 4 * 32 * 0.1)
    path = tmp_path / "fit.json"
    PARAMS.to_json(path, note="x")
    assert CostParams.from_json(path) == PARAMS
    path.write_text("{}")
    with pytest.raises(DataError, match=r"fit\.json"):
        CostParams.from_json(path)


def test_padded_attention_work_by_hand() -> None:
    from mlsyskit.serving.executor.cost_model import padded_attention_work

    # decodes with contexts 5 and 9 pad to 9; prefills (3 of 7) and (4 of 4) pad to 4 x 7
    plan = StepPlan(1, [], [1, 3, 1, 4], [5, 7, 9, 4], [])
    assert padded_attention_work(plan) == (2 * 9 + 2 * 7, 2 * 9 + 2 * 4 * 7)


def test_tensor_parallel_70b_on_two_h100s_builds_and_one_does_not() -> None:
    from mlsyskit.serving.engine import build_engine

    engine = build_engine("llama-3.1-70b", "fcfs", executor="sim", hardware="h100-sxm", tp=2)
    assert engine.block_manager.device.num_blocks > 1000
    with pytest.raises(ConfigError, match="does not fit"):
        build_engine("llama-3.1-70b", "fcfs", executor="sim", hardware="h100-sxm", tp=1)
