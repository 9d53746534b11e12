"""Stage layouts and iteration times of the baselines, and the LLM-only pipeline Optimus uses.

* Megatron-LM: the encoder(s) run in the pre-process of the first pipeline stage, plain 1F1B.
* Megatron-LM balanced: encoder + LLM layers split over PP x V virtual stages by the paper's
  Alpa-style dynamic programme (minimise the slowest virtual stage), interleaved 1F1B.
* LLM only: the LLM's own interleaved pipeline; Optimus schedules encoders into its bubbles.

The colocated three-phase baseline and the serial bound are schedules of the bubble
scheduler (:mod:`mlsyskit.training.optimus.scheduler`), not layouts, so they live there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from mlsyskit.training.optimus.config import JobConfig, ModelPart
from mlsyskit.training.optimus.costmodel import CostModel, Direction, Kernel
from mlsyskit.training.optimus.errors import OptimusConfigError, OptimusError
from mlsyskit.training.optimus.pipeline import (
    BubbleType,
    PipelineSpec,
    StageWork,
    Timeline,
    bubble_breakdown,
    simulate,
)

LayerRef = tuple[ModelPart, bool]  # (part, recompute)


def stage_work(
    cm: CostModel, layers: Sequence[LayerRef], mbs: int, tp: int,
) -> StageWork:
    """Concatenate the kernels of ``layers`` (forward in order, backward reversed)."""
    fwd: list[Kernel] = []
    bwd: list[Kernel] = []
    params = 0.0
    for part, _rc in layers:
        fwd += cm.layer_kernels(part.spec, part.seq_len, mbs, tp, Direction.FWD)
        params += part.spec.params_per_layer / tp
    for part, rc in reversed(layers):
        bwd += cm.layer_kernels(part.spec, part.seq_len, mbs, tp, Direction.BWD, rc)
    last = layers[-1][0] if layers else None
    out = cm.activation_bytes(last.spec, last.seq_len, mbs) / tp if last else 0.0
    return StageWork(tuple(fwd), tuple(bwd), params, out)


def _llm_layers(job: JobConfig) -> list[LayerRef]:
    return [(job.llm, job.recompute)] * job.llm.spec.num_layers


def _encoder_layers(job: JobConfig) -> list[LayerRef]:
    # Encoder layers are not recomputed: their activations are small (the paper's memory
    # model ignores them), so only the LLM layers pay the recompute forward.
    return [(e, False) for e in job.encoders for _ in range(e.spec.num_layers)]


def split_even(layers: Sequence[LayerRef], parts: int) -> list[list[LayerRef]]:
    """Split ``layers`` into ``parts`` contiguous groups whose sizes differ by at most one."""
    n = len(layers)
    if parts > n:
        raise OptimusError(f"cannot split {n} layers into {parts} stages")
    out, pos = [], 0
    for i in range(parts):
        size = n // parts + (1 if i < n % parts else 0)
        out.append(list(layers[pos : pos + size]))
        pos += size
    return out


def balanced_partition(costs: Sequence[float], parts: int) -> list[int]:
    """Cached front of :func:`_balanced_partition` (the DP is O(n^2 parts))."""
    return list(_balanced_cached(tuple(costs), parts))


@lru_cache(maxsize=64)
def _balanced_cached(costs: tuple[float, ...], parts: int) -> tuple[int, ...]:
    return tuple(_balanced_partition(costs, parts))


def _balanced_partition(costs: Sequence[float], parts: int) -> list[int]:
    """Sizes of ``parts`` contiguous groups minimising the largest group cost.

    The paper's Appendix B recurrence ``F(l, m) = min_j max(F(j, m-1), sum t_{j+1..l})``,
    solved exactly by dynamic programming.
    """
    n = len(costs)
    if parts > n:
        raise OptimusError(f"cannot split {n} layers into {parts} virtual stages")
    prefix = [0.0]
    for c in costs:
        prefix.append(prefix[-1] + c)
    inf = float("inf")
    best = [[inf] * (n + 1) for _ in range(parts + 1)]
    arg = [[0] * (n + 1) for _ in range(parts + 1)]
    best[0][0] = 0.0
    for m in range(1, parts + 1):
        for ell in range(m, n - (parts - m) + 1):
            for j in range(m - 1, ell):
                val = max(best[m - 1][j], prefix[ell] - prefix[j])
                if val < best[m][ell]:
                    best[m][ell], arg[m][ell] = val, j
    sizes, ell = [], n
    for m in range(parts, 0, -1):
        j = arg[m][ell]
        sizes.append(ell - j)
        ell = j
    return sizes[::-1]


def megatron_spec(job: JobConfig, cm: CostModel) -> PipelineSpec:
    """Megatron-LM: all encoder layers before the first LLM stage, plain 1F1B."""
    plan = job.llm_plan
    groups = split_even(_llm_layers(job), plan.pp)
    groups[0] = _encoder_layers(job) + groups[0]
    stages = tuple(stage_work(cm, g, plan.microbatch_size, plan.tp) for g in groups)
    p2p = cm.p2p_s(stages[0].out_bytes)
    return PipelineSpec(plan.pp, 1, plan.num_microbatches, stages, p2p, interleaved=False)


def balanced_spec(job: JobConfig, cm: CostModel) -> PipelineSpec:
    """Megatron-LM balanced: DP-partitioned encoder + LLM layers, interleaved 1F1B."""
    plan = job.llm_plan
    if len(job.encoders) != 1:
        raise OptimusError("Megatron-LM balanced supports a single encoder (as in the paper)")
    layers = _encoder_layers(job) + _llm_layers(job)
    mbs, tp = plan.microbatch_size, plan.tp
    costs = [stage_work(cm, [layer], mbs, tp) for layer in layers]
    sizes = balanced_partition([w.fwd_s + w.bwd_s for w in costs], plan.pp * plan.virtual_stages)
    stages, pos = [], 0
    for size in sizes:
        stages.append(stage_work(cm, layers[pos : pos + size], mbs, tp))
        pos += size
    p2p = cm.p2p_s(stages[-1].out_bytes)
    interleaved = plan.virtual_stages > 1
    return PipelineSpec(plan.pp, plan.virtual_stages, plan.num_microbatches, tuple(stages), p2p,
                        interleaved)


def llm_only_spec(job: JobConfig, cm: CostModel) -> PipelineSpec:
    """The LLM alone under the job's plan (interleaved when ``virtual_stages > 1``)."""
    plan = job.llm_plan
    groups = split_even(_llm_layers(job), plan.pp * plan.virtual_stages)
    stages = tuple(stage_work(cm, g, plan.microbatch_size, plan.tp) for g in groups)
    p2p = cm.p2p_s(stages[0].out_bytes)
    return PipelineSpec(plan.pp, plan.virtual_stages, plan.num_microbatches, stages, p2p,
                        plan.virtual_stages > 1)


@dataclass(frozen=True)
class DPCosts:
    """Exposed DP collectives per device: all-gather at step start, reduce-scatter at the end."""

    ag_s: tuple[float, ...]
    rs_s: tuple[float, ...]


def dp_costs(spec: PipelineSpec, cm: CostModel, dp: int) -> DPCosts:
    """The first model chunk's parameter all-gather (bf16) and gradient reduce-scatter (fp32)
    cannot be hidden (Table 1); later chunks overlap with compute."""
    ag = tuple(cm.dp_collective_s(spec.stages[d].params, dp, 2) for d in range(spec.pp))
    rs = tuple(cm.dp_collective_s(spec.stages[d].params, dp, 4) for d in range(spec.pp))
    return DPCosts(ag, rs)


@dataclass(frozen=True)
class PipelineRun:
    """A simulated baseline iteration."""

    name: str
    spec: PipelineSpec
    timeline: Timeline
    dp: DPCosts
    iteration_s: float

    def bubbles(self) -> dict[BubbleType, float]:
        return bubble_breakdown(self.timeline, self.dp.ag_s, self.dp.rs_s, self.iteration_s)


def run_pipeline(name: str, spec: PipelineSpec, cm: CostModel, dp: int) -> PipelineRun:
    """Simulate one iteration: DP all-gather, the pipeline, DP reduce-scatter."""
    costs = dp_costs(spec, cm, dp)
    tl = simulate(spec, costs.ag_s)
    it = max(tl.last_end(d) + costs.rs_s[d] for d in range(spec.pp))
    return PipelineRun(name, spec, tl, costs, it)


def encoder_tp_problem(job: JobConfig) -> str | None:
    """Why Megatron-LM cannot run this job's encoders, or ``None``.

    Both Megatron-LM baselines put the encoder layers into the LLM's pipeline stages, so they
    run at the LLM's TP degree, and Megatron splits attention heads over TP ranks.
    """
    tp = job.llm_plan.tp
    bad = [e.spec for e in job.encoders if e.spec.num_heads % tp]
    if not bad:
        return None
    names = ", ".join(f"{spec.name} ({spec.num_heads} heads)" for spec in bad)
    return (f"the Megatron-LM baselines run the encoders at the LLM's TP = {tp}, which does "
            f"not divide the attention heads of {names}")


def _require_runnable(job: JobConfig) -> None:
    why = encoder_tp_problem(job)
    if why is not None:
        raise OptimusConfigError(f"{job.name}: {why}")


def megatron(job: JobConfig, cm: CostModel) -> PipelineRun:
    _require_runnable(job)
    return run_pipeline("Megatron-LM", megatron_spec(job, cm), cm, job.llm_plan.dp)


def megatron_balanced(job: JobConfig, cm: CostModel) -> PipelineRun:
    _require_runnable(job)
    return run_pipeline("Megatron-LM balanced", balanced_spec(job, cm), cm, job.llm_plan.dp)


def llm_only(job: JobConfig, cm: CostModel) -> PipelineRun:
    return run_pipeline("LLM only", llm_only_spec(job, cm), cm, job.llm_plan.dp)
