from __future__ import annotations

from mlsyskit.hardware import get_catalogue
from mlsyskit.training.optimus.config import JobConfig, ModelPart, ParallelPlan
from mlsyskit.training.optimus.models import TransformerSpec


def make_job(
    *, pp: int = 2, tp: int = 2, virtual: int = 1, num_mb: int = 4, enc_layers: int = 4,
    llm_layers_per_chunk: int = 2, enc_hidden: int = 512, llm_hidden: int = 1024,
    num_encoders: int = 1, recompute: bool = True,
) -> JobConfig:
    """A small job on H100s (real catalogue numbers) for scheduler tests."""
    cat = get_catalogue()
    encs = tuple(
        ModelPart(TransformerSpec(f"enc{i}", enc_hidden, enc_layers, 4 * enc_hidden, 8, False),
                  512)
        for i in range(num_encoders)
    )
    llm = ModelPart(
        TransformerSpec("llm", llm_hidden, pp * virtual * llm_layers_per_chunk, 4 * llm_hidden,
                        8, True),
        1024,
    )
    plan = ParallelPlan(dp=2, pp=pp, tp=tp, virtual_stages=virtual, num_microbatches=num_mb,
                        microbatch_size=1)
    return JobConfig("test", cat.get("h100-sxm"), plan.num_gpus, 8, cat.get("nvlink4"),  # type: ignore[arg-type]
                     cat.get("ib-ndr"), encs, llm, plan, recompute)  # type: ignore[arg-type]
