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
from dataclasses import dataclass, replace

from mlsyskit.serving.neo.cost import LayerCosts
from mlsyskit.serving.plan import StepPlan


class ExecMode(enum.Enum):
    """How an iteration runs its layers."""

    SEQUENTIAL = "sequential"  # one batch, the usual layer loop
    PIPELINED = "pipelined"  # two sub-batches shifted by half a layer


class ModeRule(enum.Enum):
    """How the scheduler chooses between the pipelined plan and the device-only batch.

    Both compare ``n`` requests served in ``t`` seconds of device time per layer (the host is
    hidden by the slack rule):

    * ``THROUGHPUT`` (the paper's step 5): pipelined iff ``n_p / t_p > n_g / t_g``;
    * ``POWER``: pipelined iff ``n_p / t_p**2 > n_g / t_g**2``, i.e. iff its throughput gain
      ``(n_p / t_p) / (n_g / t_g)`` exceeds its iteration-time growth ``t_p / t_g``. Every
      request of the step waits for the whole iteration, so a pipelined step that serves 2x
      the requests in 2x the time doubles everyone's per-token latency for no gain in rate;
      this rule (Kleinrock's *power*, throughput / delay) declines it.
    """

    THROUGHPUT = "throughput"
    POWER = "power"


def pipelining_pays(rule: ModeRule, n_seq: int, t_seq: float, n_pip: int, t_pip: float,
                    max_t_pip: float = math.inf) -> bool:
    """Whether the pipelined plan (``n_pip`` requests, ``t_pip`` s) beats the device-only one.

    An empty device-only plan (``t_seq == 0``) loses to any non-empty pipelined plan. A
    pipelined plan longer than ``max_t_pip`` (a latency target, per layer) never pays.
    """
    if t_pip <= 0 or n_pip <= 0 or t_pip > max_t_pip:
        return False
    if t_seq <= 0:
        return True
    if rule is ModeRule.POWER:
        return n_pip / t_pip**2 > n_seq / t_seq**2
    return n_pip / t_pip > n_seq / t_seq


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

    def add_host_decode(self, context_tokens: int, count: int = 1) -> None:
        """Add (``count=1``) or take back (``count=-1``) one host decode of this context."""
        self.num_tokens += count
        self.num_seqs += count
        self.cdec_seqs += count
        self.cdec_tokens += count * context_tokens

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


def host_queue_served(
    costs: LayerCosts, b0: SubBatchLoad, host_contexts: list[int], rule: ModeRule,
    max_t_pip: float = math.inf,
) -> bool:
    """Would a decode-only step decode *every* host request, and would it run pipelined?

    ``b0`` holds the device decodes of that step (no host work) and ``host_contexts`` the
    context length of each host decode, in queue order. They are placed as the scheduler's
    step 3 places them (first into b1, then into the sub-batch with more slack); one that
    breaks the slack, or a pipelined plan that ``rule`` rejects against ``b0`` alone, means
    some host request would sit idle in its pool in that step.
    """
    if not host_contexts:
        return True
    b = [replace(b0), SubBatchLoad()]
    nxt = 1
    for ctx in host_contexts:
        b[nxt].add_host_decode(ctx)
        r0, r1 = slacks(costs, b[0], b[1])
        if min(r0, r1) < 0:
            return False
        nxt = 1 if r1 > r0 else 0
    if not b[1].cdec_seqs:
        return False
    t_pip = b[0].gpu_time(costs) + b[1].gpu_time(costs)
    return pipelining_pays(rule, b0.num_seqs, b0.gpu_time(costs),
                           b[0].num_seqs + b[1].num_seqs, t_pip, max_t_pip)


@dataclass(frozen=True)
class PipeliningHeadroom:
    """The best pipelined decode step next to the device-only one (per layer).

    ``num_host`` host decodes of ``ctx`` tokens fit the slack next to ``num_device`` device
    decodes; ``t_seq`` / ``t_pip`` are the device seconds per layer of the two plans.
    """

    num_device: int
    num_host: int
    t_seq: float
    t_pip: float

    @property
    def throughput_gain(self) -> float:
        """Pipelined requests per second / device-only requests per second."""
        return (self.num_device + self.num_host) / self.t_pip / (self.num_device / self.t_seq)

    @property
    def iteration_growth(self) -> float:
        return self.t_pip / self.t_seq


def pipelining_headroom(costs: LayerCosts, num_device: int, ctx: int,
                        max_host: int = 4096) -> PipeliningHeadroom:
    """How much a full host queue could add to a decode step of ``num_device`` device decodes.

    Host decodes (all of ``ctx`` context tokens, like the device ones) are placed as the
    scheduler's step 3 places them until the slack breaks. It says whether offloading can pay
    at all on a setup: a throughput gain below 1, or below the iteration growth, means NEO's
    rules fall back to device-only in decode steps.
    """
    b0 = SubBatchLoad(num_tokens=num_device, num_seqs=num_device,
                      gdec_tokens=num_device * ctx)
    t_seq = b0.gpu_time(costs)
    b = [replace(b0), SubBatchLoad()]
    nxt = 1
    placed = 0
    while placed < max_host:
        trial = replace(b[nxt], num_tokens=b[nxt].num_tokens + 1, num_seqs=b[nxt].num_seqs + 1,
                        cdec_seqs=b[nxt].cdec_seqs + 1, cdec_tokens=b[nxt].cdec_tokens + ctx)
        pair = (trial, b[1]) if nxt == 0 else (b[0], trial)
        r0, r1 = slacks(costs, *pair)
        if min(r0, r1) < 0:
            break
        b[nxt] = trial
        placed += 1
        nxt = 1 if r1 > r0 else 0
    t_pip = b[0].gpu_time(costs) + b[1].gpu_time(costs) if placed else t_seq
    return PipeliningHeadroom(num_device, placed, t_seq, t_pip)


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
