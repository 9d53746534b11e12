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


def test_step_errors_count_pipelined_steps_and_their_decode_ratio() -> None:
    from mlsyskit.serving.neo.plan import ExecMode, NeoStepPlan

    def neo_plan(step_id: int, new: int, mode: ExecMode) -> NeoStepPlan:
        return NeoStepPlan(step_id, [object(), object()], [new, 1], [10, 10],  # type: ignore[list-item]
                           [[0], [0]], on_host=(False, True), sub_batch=(0, 1), mode=mode)

    # FakeCosts, one layer: pipelined = max(linr 1, host 0.1) + max(linr 1, 0) = 2 s;
    # sequential = linr 1 + host 0.1 = 1.1 s (a prompt adds pref 0.5 s)
    steps = [(neo_plan(0, 1, ExecMode.PIPELINED), 3.0),
             (neo_plan(1, 1, ExecMode.PIPELINED), 2.0),
             (neo_plan(2, 5, ExecMode.PIPELINED), 9.0),  # has a prompt: not decode-only
             (neo_plan(3, 1, ExecMode.SEQUENTIAL), 1.1)]
    e = step_errors("neo", steps, FakeCosts(), block_size=4)  # type: ignore[arg-type]
    assert e.num_pipelined == 3
    assert e.decode_pipelined_ratio == pytest.approx(1.25)  # median of 3 / 2 and 2 / 2


def test_step_extras_are_the_line_through_two_residuals() -> None:
    from mlsyskit.serving.neo.profiler import extras_from_residuals

    # fixed + per_seq * k through (1, 3) and (11, 13): per_seq 1, fixed 2 (not 3)
    assert extras_from_residuals(3.0, 13.0, 11) == pytest.approx((2.0, 1.0))
    # a noisy negative one-sequence residual does not inflate the slope; clamped at the end
    assert extras_from_residuals(-1.0, 1.0, 3) == pytest.approx((0.0, 1.0))
    # a falling line is noise: no per-sequence cost, the one-sequence residual stays
    assert extras_from_residuals(2.0, 1.0, 2) == pytest.approx((2.0, 0.0))


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
    assert seq.decode_pipelined_ratio is None and pip.decode_pipelined_ratio is not None
    assert tables.lnch_s >= 0 and tables.extra_fixed_s >= 0 and tables.extra_per_seq_s >= 0
