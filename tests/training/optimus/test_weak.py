from __future__ import annotations

import pytest

from mlsyskit.training.optimus import baselines
from mlsyskit.training.optimus.config import load_builtin
from mlsyskit.training.optimus.costmodel import Calibration, CostModel
from mlsyskit.training.optimus.weak import WEAK_MODELS, weak_scaling

# Appendix D: (encoder, LLM, GPUs, global batch, dp, pp, V); A/B use V5 (see the configs).
EXPECTED = {
    "a": ("vit-11b", "llama-70b", 64, 32, 2, 4, 5),
    "b": ("vit-22b", "llama-70b", 128, 64, 4, 4, 5),
    "c": ("vit-11b", "gpt-175b", 256, 128, 4, 8, 12),
    "d": ("vit-22b", "gpt-175b", 512, 256, 8, 8, 12),
}


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_weak_configs_match_appendix_d(key: str) -> None:
    enc, llm, gpus, batch, dp, pp, v = EXPECTED[key]
    job = load_builtin(WEAK_MODELS[key][0])
    p = job.llm_plan
    assert job.encoders[0].spec.name == enc and job.llm.spec.name == llm
    assert job.num_gpus == gpus == p.dp * p.pp * p.tp
    assert (p.dp, p.pp, p.tp, p.virtual_stages, p.microbatch_size) == (dp, pp, 8, v, 2)
    # microbatches per pipeline = batch / (DP * mbs): 8, 8, 16, 16
    assert p.num_microbatches == batch // (dp * 2)
    assert job.llm.spec.num_layers % (pp * v) == 0
    assert job.llm.spec.num_heads % p.tp == 0 and job.encoders[0].spec.num_heads % p.tp == 0
    cm = CostModel.for_job(job)
    assert baselines.megatron(job, cm).iteration_s > 0


def test_weak_scaling_times_are_replay_consistent() -> None:
    # A and C cover both LLMs; B and D only change the encoder and DP (run by the benchmark).
    times = weak_scaling(Calibration(), fine_top_k=1, keys=("a", "c"))
    assert set(times) == {"a", "c"}
    for t in times.values():
        assert t["violations"] == 0
        # fine <= coarse <= serial (all replayed): Optimus never loses to its own serial baseline
        assert t["fine"] <= t["coarse"] * (1 + 1e-9)
        assert t["coarse"] <= t["serial"] * (1 + 1e-9)
        assert min(t.values()) >= 0 and t["megatron"] > 0 and t["balanced"] > 0
