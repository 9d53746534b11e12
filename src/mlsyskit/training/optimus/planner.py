"""Model planner (paper section 4.1): encoder parallel plans, memory filter, microbatch splits.

Encoder plans (DP_enc, PP_enc, TP_enc) use all GPUs with PP_enc | PP_llm and TP_enc | TP_llm
(the feasible ones also need TP_enc | the encoders' attention heads), so whole encoder
replicas colocate with each LLM replica: ``m = DP_enc / DP_llm`` encoder
pipelines per LLM pipeline, ``PP_llm / PP_enc`` of them along the pipeline axis and
``TP_llm / TP_enc`` along the tensor axis.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

from mlsyskit.training.optimus.config import JobConfig
from mlsyskit.training.optimus.errors import OptimusConfigError

BYTES_MODEL_STATE = 6  # bf16 params + fp32 grads (the paper's k)
BYTES_OPTIMIZER = 12  # fp32 master weights + Adam moments, sharded over DP


@dataclass(frozen=True)
class EncoderPlan:
    """Parallel plan of the encoder(s)."""

    dp: int
    pp: int
    tp: int
    pp_llm: int
    tp_llm: int

    @property
    def groups(self) -> int:
        """Encoder pipelines along the LLM's pipeline axis."""
        return self.pp_llm // self.pp

    @property
    def columns(self) -> int:
        """Encoder pipelines along the LLM's tensor axis (identical bubbles)."""
        return self.tp_llm // self.tp

    @property
    def pipelines_per_llm(self) -> int:
        """The paper's m = DP_enc / DP_llm."""
        return self.groups * self.columns

    def device(self, group: int, stage: int) -> int:
        """LLM stage-device hosting encoder ``stage`` of pipeline ``group``."""
        return group * self.pp + stage

    def label(self) -> str:
        return f"DP{self.dp} PP{self.pp} TP{self.tp}"


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def enumerate_plans(job: JobConfig) -> list[EncoderPlan]:
    """Every encoder plan with PP_enc | PP_llm and TP_enc | TP_llm (all GPUs used)."""
    plan = job.llm_plan
    out = []
    for pp in _divisors(plan.pp):
        for tp in _divisors(plan.tp):
            dp = job.num_gpus // (pp * tp)
            out.append(EncoderPlan(dp, pp, tp, plan.pp, plan.tp))
    return out


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per GPU of one encoder plan colocated with the LLM plan."""

    encoder_state: float
    llm_state: float
    optimizer: float
    llm_activations: float

    @property
    def total(self) -> float:
        return self.encoder_state + self.llm_state + self.optimizer + self.llm_activations


def memory_estimate(job: JobConfig, enc: EncoderPlan) -> MemoryEstimate:
    """Model states with k = 6 bytes/param, DP-sharded optimizer, LLM activations.

    LLM activations follow Korthikanti et al.: with full recomputation a layer keeps its
    input (``2 s b h / t`` bytes with sequence parallelism) per in-flight microbatch; without
    it, ``s b h (34 + 5 a s / h) / t``.  Encoder activations are ignored, as in the paper.
    """
    plan = job.llm_plan
    phi_enc = sum(e.spec.num_params for e in job.encoders)
    phi_llm = job.llm.spec.num_params
    enc_shard = phi_enc / (enc.pp * enc.tp)
    llm_shard = phi_llm / (plan.pp * plan.tp)
    optimizer = BYTES_OPTIMIZER * (enc_shard / enc.dp + llm_shard / plan.dp)
    spec, s, b, t = job.llm.spec, job.llm.seq_len, plan.microbatch_size, plan.tp
    per_layer = (
        2.0 * s * b * spec.hidden / t
        if job.recompute
        else s * b * spec.hidden * (34 + 5 * spec.num_heads * s / spec.hidden) / t
    )
    layers_per_stage = spec.num_layers / plan.pp
    in_flight = min(plan.num_microbatches, plan.pp)  # stage 0 holds pp microbatches (1F1B)
    return MemoryEstimate(
        BYTES_MODEL_STATE * enc_shard, BYTES_MODEL_STATE * llm_shard, optimizer,
        per_layer * layers_per_stage * in_flight,
    )


def memory_overhead(job: JobConfig, enc: EncoderPlan) -> float:
    """The paper's MEM_overhead = k (DP_enc - DP_llm) Phi_enc / n_gpu, in bytes per GPU."""
    phi_enc = sum(e.spec.num_params for e in job.encoders)
    return BYTES_MODEL_STATE * (enc.dp - job.llm_plan.dp) * phi_enc / job.num_gpus


class Rejection(Enum):
    """Why an encoder plan is filtered out (checked in this order)."""

    HEADS = "TP_enc does not divide the encoder's attention heads"
    MEMORY = "does not fit in GPU memory"
    DEPTH = "more encoder stages than encoder layers"
    MICROBATCHES = "microbatches do not split among its encoder pipelines"


def rejection(job: JobConfig, plan: EncoderPlan) -> Rejection | None:
    """The first reason ``plan`` cannot run, or ``None`` when it is feasible.

    Megatron splits attention heads over TP ranks, so TP_enc must divide the heads of every
    encoder (they share the plan); the other checks are the memory filter, encoder stages no
    deeper than the shallowest encoder, and whole microbatches for every encoder pipeline.
    """
    if any(e.spec.num_heads % plan.tp for e in job.encoders):
        return Rejection.HEADS
    if memory_estimate(job, plan).total > job.gpu.memory_bytes:
        return Rejection.MEMORY
    if plan.pp > min(e.spec.num_layers for e in job.encoders):
        return Rejection.DEPTH
    n = job.llm_plan.num_microbatches
    if n % plan.columns or n // plan.columns < plan.groups:
        return Rejection.MICROBATCHES
    return None


def rejected_plans(job: JobConfig) -> list[tuple[EncoderPlan, Rejection]]:
    """Every enumerated plan that is filtered out, with its reason."""
    out = []
    for p in enumerate_plans(job):
        why = rejection(job, p)
        if why is not None:
            out.append((p, why))
    return out


def feasible_plans(job: JobConfig) -> list[EncoderPlan]:
    """Plans whose TP divides the encoders' heads, that fit in memory and split the batch."""
    return [p for p in enumerate_plans(job) if rejection(job, p) is None]


def require_plans(job: JobConfig, source: str | None = None) -> list[EncoderPlan]:
    """:func:`feasible_plans`, or a config error saying why every plan was filtered out.

    Raises
    ------
    OptimusConfigError
        No encoder plan is feasible: the job as described cannot run (bad input, exit 2).
        The message names ``source`` (the config file) and counts the plans per reason.
    """
    plans = feasible_plans(job)
    if plans:
        return plans
    counts = Counter(why for _, why in rejected_plans(job))
    reasons = "; ".join(f"{why.value}: {n}" for why, n in counts.items())
    where = f"{source}: " if source else ""
    raise OptimusConfigError(
        f"{where}{job.name}: no encoder plan fits on {job.num_gpus} x {job.gpu.name} "
        f"({job.gpu.memory_gib} GiB) with the LLM plan DP{job.llm_plan.dp} PP{job.llm_plan.pp} "
        f"TP{job.llm_plan.tp}; rejected {sum(counts.values())} encoder plans ({reasons})"
    )


def compositions(total: int, parts: int) -> Iterator[tuple[int, ...]]:
    """All ways to write ``total`` as an ordered sum of ``parts`` positive integers."""
    if parts == 1:
        if total >= 1:
            yield (total,)
        return
    for first in range(1, total - parts + 2):
        for rest in compositions(total - first, parts - 1):
            yield (first, *rest)


def _bounded(total: int, parts: int, lo: int, hi: int) -> Iterator[tuple[int, ...]]:
    """Compositions of ``total`` into ``parts`` parts, each in ``[lo, hi]``."""
    if parts == 1:
        if lo <= total <= hi:
            yield (total,)
        return
    for first in range(max(lo, total - hi * (parts - 1)), min(hi, total - lo * (parts - 1)) + 1):
        for rest in _bounded(total - first, parts - 1, lo, hi):
            yield (first, *rest)


def compositions_balanced_first(total: int, parts: int) -> Iterator[tuple[int, ...]]:
    """Every composition exactly once, in rings of growing spread around the even split.

    Why: the number of compositions explodes (C(31, 7) = 2.6 million for 32 microbatches
    over 8 encoder pipelines), so a capped search must see the near-even partitions, which
    the lexicographic order (1, 1, ..., N-7) reaches last.
    """
    if parts < 1 or total < parts:
        return
    base_lo, base_hi = total // parts, -(-total // parts)
    prev: tuple[int, int] | None = None  # bounds of the previous ring
    spread = 0
    while True:
        lo, hi = max(1, base_lo - spread), base_hi + spread
        for c in _bounded(total, parts, lo, hi):
            if prev is None or min(c) < prev[0] or max(c) > prev[1]:
                yield c
        if lo == 1 and hi >= total - parts + 1:
            return
        prev = (lo, hi)
        spread += 1


def num_compositions(total: int, parts: int) -> int:
    """C(total - 1, parts - 1)."""
    from math import comb

    return comb(total - 1, parts - 1) if total >= parts >= 1 else 0
