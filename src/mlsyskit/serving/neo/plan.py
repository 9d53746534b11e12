"""NEO's step plan: a :class:`StepPlan` that also says where each request's attention runs.

The scheduler and executors still exchange only plans and results; a NEO plan adds, per
request, whether its KV and decode attention live on the host and which of the two asymmetric
sub-batches it belongs to, plus the execution mode. Block tables of host-resident requests hold
*host* block ids. A plain :class:`StepPlan` (device-only engines) is the special case with every
request on the device in sub-batch 0, run sequentially.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from mlsyskit.serving.neo.cost import LayerCosts
from mlsyskit.serving.plan import StepPlan


class ExecMode(enum.Enum):
    """How an iteration runs its layers."""

    SEQUENTIAL = "sequential"  # one batch, the usual layer loop
    PIPELINED = "pipelined"  # two sub-batches shifted by half a layer


@dataclass(frozen=True, slots=True)
class NeoStepPlan(StepPlan):
    """A step plan with NEO placement.

    Parameters
    ----------
    on_host
        Per request: its KV is in the host pool, so its attention runs on the host CPU (a
        decode) or its prefill KV is written to the host pool (a CPU-destined prefill).
    sub_batch
        Per request: 0 or 1. Sub-batch 1 holds only host decodes.
    mode
        Sequential or pipelined.
    predicted_s
        The scheduler's predicted duration of the step (from its profiled tables).
    """

    on_host: tuple[bool, ...] = ()
    sub_batch: tuple[int, ...] = ()
    mode: ExecMode = ExecMode.SEQUENTIAL
    predicted_s: float = 0.0


@dataclass
class SubBatchLoad:
    """Work of one sub-batch, as the cost formulas need it (mutable while planning)."""

    num_tokens: int = 0
    num_seqs: int = 0
    pref_s: float = 0.0  # prefill attention seconds per layer (device)
    gdec_tokens: int = 0  # context tokens of device decodes
    cdec_seqs: int = 0
    cdec_tokens: int = 0

    def gpu_time(self, costs: LayerCosts) -> float:
        """Device time per layer: linear layers + device attention."""
        return costs.linr(self.num_tokens) + self.pref_s + costs.gdec(self.gdec_tokens)

    def cpu_time(self, costs: LayerCosts) -> float:
        """Host time per layer: CPU attention + launch (0 without host decodes)."""
        if not self.cdec_seqs:
            return 0.0
        return costs.cdec(self.cdec_seqs, self.cdec_tokens) + costs.lnch_s


def slacks(costs: LayerCosts, b0: SubBatchLoad, b1: SubBatchLoad) -> tuple[float, float]:
    """NEO's ``remains[j]``: device time that hides sub-batch ``j``'s host attention, minus it.

    ``remains[j] = linr(b_{1-j}) + pref(b_j) + gdec(b_j) - (cdec(b_j) + lnch)``.
    """
    r0 = costs.linr(b1.num_tokens) + b0.pref_s + costs.gdec(b0.gdec_tokens) - b0.cpu_time(costs)
    r1 = costs.linr(b0.num_tokens) + b1.pref_s + costs.gdec(b1.gdec_tokens) - b1.cpu_time(costs)
    if not b0.cdec_seqs:
        r0 = max(r0, 0.0)  # nothing to hide
    if not b1.cdec_seqs:
        r1 = max(r1, 0.0)
    return r0, r1


def layer_time(costs: LayerCosts, b0: SubBatchLoad, b1: SubBatchLoad, mode: ExecMode) -> float:
    """Seconds per layer.

    Pipelined: stage 0 runs b0's linear layers on the device while the host attends b1; stage 1
    runs b1's linear layers and b0's device attention while the host attends b0, so a stage
    lasts the longer of its device and host parts. Sequential: everything one after the other.
    """
    if mode is ExecMode.PIPELINED:
        stage0 = max(costs.linr(b0.num_tokens), b1.cpu_time(costs))
        stage1 = max(
            costs.linr(b1.num_tokens) + b0.pref_s + costs.gdec(b0.gdec_tokens),
            b0.cpu_time(costs),
        )
        return stage0 + stage1 + b1.pref_s + costs.gdec(b1.gdec_tokens)
    merged = SubBatchLoad(
        num_tokens=b0.num_tokens + b1.num_tokens,
        pref_s=b0.pref_s + b1.pref_s,
        gdec_tokens=b0.gdec_tokens + b1.gdec_tokens,
        cdec_seqs=b0.cdec_seqs + b1.cdec_seqs,
        cdec_tokens=b0.cdec_tokens + b1.cdec_tokens,
    )
    return merged.gpu_time(costs) + merged.cpu_time(costs)


def plan_loads(plan: StepPlan, costs: LayerCosts) -> tuple[SubBatchLoad, SubBatchLoad, int]:
    """Sub-batch loads of any plan, and the KV tokens its host-destined prefills write.

    A plain :class:`StepPlan` is all-device, sub-batch 0. A chunk of ``n`` new tokens over a
    context of ``ctx`` costs the prefill attention of ``sqrt(n × ctx)`` tokens (same pairs).
    """
    loads = (SubBatchLoad(), SubBatchLoad())
    is_neo = isinstance(plan, NeoStepPlan) and bool(plan.on_host)
    host_prefill_tokens = 0
    for i, (n, ctx) in enumerate(zip(plan.num_new_tokens, plan.context_lens, strict=True)):
        host = plan.on_host[i] if is_neo else False  # type: ignore[attr-defined]
        b = loads[plan.sub_batch[i] if is_neo else 0]  # type: ignore[attr-defined]
        b.num_tokens += n
        b.num_seqs += 1
        if n > 1 or ctx == n:  # a prompt (chunk): device prefill attention
            b.pref_s += costs.pref(math.sqrt(n * ctx))  # type: ignore[arg-type]
            if host:
                host_prefill_tokens += n
        elif host:
            b.cdec_seqs += 1
            b.cdec_tokens += ctx
        else:
            b.gdec_tokens += ctx
    return loads[0], loads[1], host_prefill_tokens


def step_time(plan: StepPlan, costs: LayerCosts, block_size: int) -> float:
    """Seconds for one step of ``plan`` under ``costs`` (0 for an empty plan).

    ``L × layer_time + per-step extras + swaps``; the KV of host-destined prefills streams out
    on a copy stream during the layers, so only its excess over the compute time counts.
    """
    swapped = (len(plan.swap_out) + len(plan.swap_in)) * block_size
    if not plan.requests:
        return costs.link(swapped) if swapped else 0.0
    b0, b1, host_prefill = plan_loads(plan, costs)
    mode = plan.mode if isinstance(plan, NeoStepPlan) else ExecMode.SEQUENTIAL
    compute = costs.num_layers * layer_time(costs, b0, b1, mode)
    compute = max(compute, costs.link(host_prefill))
    return compute + costs.step_extra(len(plan.requests)) + costs.link(swapped)
