"""The cost-model check: predicted step times against measured (real) or charged (simulated)."""

from __future__ import annotations

import pytest
import torch

from mlsyskit.errors import BenchmarkError
from mlsyskit.serving.neo.costcheck import real_cost_check, sim_prediction_errors, step_errors
from mlsyskit.serving.neo.workloads import NeoWorkload, neo_workload
from mlsyskit.serving.plan import StepPlan

from .fakes import FakeCosts


def _decode_plan(step_id: int, num_seqs: int) -> StepPlan:
    reqs = [object()] * num_seqs  # step_time reads only the count and the lengths
    return StepPlan(step_id, reqs, [1] * num_seqs, [10] * num_seqs,  # type: ignore[arg-type]
                    [[0]] * num_seqs)


def test_step_errors_against_hand_computed_predictions() -> None:
    # FakeCosts: one layer, linr = 1 s for any batch, device decode free -> every step 1 s
    steps = [(_decode_plan(0, 2), 0.5), (_decode_plan(1, 3), 1.0), (_decode_plan(2, 1), 2.0)]
    e = step_errors("x", steps, FakeCosts(), block_size=4)  # type: ignore[arg-type]
    # |1 - 0.5| / 0.5 = 1, 0, |1 - 2| / 2 = 0.5
    assert e.num_steps == 3 and e.num_pipelined == 0
    assert e.median_rel_err == pytest.approx(0.5)
    assert e.p90_rel_err == pytest.approx(1.0)
    assert e.total_ratio == pytest.approx(3.0 / 3.5)


def test_step_errors_refuse_an_empty_run() -> None:
    with pytest.raises(BenchmarkError, match="no step ran"):
        step_errors("empty", [], FakeCosts(), block_size=4)  # type: ignore[arg-type]


def test_simulator_charges_what_the_scheduler_predicts_up_to_interpolation() -> None:
    specs = neo_workload(NeoWorkload.SUMMARIZATION, 40, 2.0, seed=1)
    e = sim_prediction_errors("t4-7b", specs)
    assert e.num_steps > 0 and e.num_pipelined is None
    # tables sampled from the charged roofline: only the grids' interpolation error remains
    assert e.p90_rel_err < 0.02
    assert e.total_ratio == pytest.approx(1.0, abs=0.02)


def test_real_check_runs_sequential_and_pipelined_steps() -> None:
    before = torch.get_num_threads()
    tables, (seq, pip) = real_cost_check("tiny", num_requests=3, output_len=4, repeats=1)
    assert torch.get_num_threads() == before  # the one-thread pin is undone
    assert tables.num_layers == 2
    assert seq.label == "device-only" and seq.num_pipelined == 0
    assert pip.label == "fastdecode" and pip.num_pipelined and pip.num_pipelined > 0
    # every request's prefill and 3 decodes ran somewhere: at least 4 steps per engine
    assert seq.num_steps >= 4 and pip.num_steps >= 4
    assert seq.total_ratio > 0 and pip.total_ratio > 0
