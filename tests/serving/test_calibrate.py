from __future__ import annotations

import random

import pytest

from mlsyskit.serving.calibrate import StepSample, fit_cost_params, relative_errors
from mlsyskit.serving.executor import CostModel, CostParams
from mlsyskit.serving.model import get_model_config


def test_fit_recovers_known_constants_from_exact_samples() -> None:
    truth = CostParams(overhead_s=0.004, s_per_seq=0.0005, s_per_flop=2e-11,
                       s_per_attn_flop=5e-11, s_per_byte=1e-10)
    cost = CostModel(get_model_config("small"), truth)
    rng = random.Random(0)
    samples = []
    for _ in range(60):
        seqs = rng.randint(1, 32)
        tokens = seqs + rng.choice([0, 0, 16, 128, 256])
        ctx = seqs * rng.randint(4, 800)
        pairs = ctx + (tokens - seqs) * rng.randint(16, 400)
        samples.append(StepSample(tokens, seqs, ctx, pairs,
                                  cost.step_time(tokens, seqs, ctx, pairs)))
    fit = fit_cost_params("small", samples[:45], samples[45:])
    assert fit.train_median_rel_err < 1e-3 and fit.test_median_rel_err < 1e-3
    assert fit.params.overhead_s == pytest.approx(0.004, rel=0.02)
    assert fit.params.s_per_seq == pytest.approx(0.0005, rel=0.02)
    assert max(relative_errors(CostModel(get_model_config("small"), fit.params), samples)) < 0.01
