"""NEO's load-aware scheduler: which decodes run on the host, and sequential vs pipelined mode.

Each :meth:`NeoScheduler.schedule` applies the paper's rules in order (notes §1.4):

1. device decodes count against the budget (one token each);
2. **swap out** the newest device decodes while over the budget or the device pool; they go to
   the *front* of the CPU-decoding queue (they keep decoding, on the host);
3. otherwise **swap in** host decodes, FCFS, while the device stays under its swap-in
   watermark (hysteresis: never both in one step);
4. **admit prefills** FCFS while the token budget, sequence slots and pools allow; a prefill goes
   to the device unless an earlier prefill of this step went to the host (then all later ones
   do), or the device pool is full;
5. **decide the batch**: b0 = prefills + device decodes; CPU decodes join b1 / b0 (whichever has
   more slack) while both sub-batches keep non-negative slack (:func:`~.plan.slacks`); drop
   host-destined prefills from b0 while it stays above ``linr_threshold_tokens`` and slack stays
   non-negative; then run pipelined iff it beats the device-only batch under the
   :class:`~.plan.ModeRule` (the paper: requests per second of device time; default: that
   throughput gain must also exceed the growth of the iteration, which every request of the
   step waits for), else fall back to the device-only batch.

Defaults add three latency guards to these rules (:class:`NeoConfig`, :meth:`NeoConfig.paper`
removes them): a host-destined prefill is admitted only if the host will keep decoding it
(*steady admission*), new prefills do not overtake host decodes for the device, and the mode
rule is the latency-aware one. With them NEO falls back to the device-only engine's behaviour
whenever offloading does not pay at equal latency.

FastDecode+ (every decode on the host, no slack check, always pipelined) is the same class with
:attr:`OffloadMode.FASTDECODE`. The scheduler predicts with its own :class:`LayerCosts` (profiled
tables); executors charge their own costs.
"""

from __future__ import annotations

import enum
import heapq
import math
from dataclasses import dataclass

from mlsyskit.errors import ConfigError
from mlsyskit.serving.errors import RequestTooLargeError, ServingError
from mlsyskit.serving.neo.block_manager import NeoBlockManager
from mlsyskit.serving.neo.cost import LayerCosts
from mlsyskit.serving.neo.plan import (
    ExecMode,
    ModeRule,
    NeoStepPlan,
    SubBatchLoad,
    host_queue_served,
    pipelining_pays,
    slacks,
    step_time,
)
from mlsyskit.serving.plan import StepPlan, StepResult
from mlsyskit.serving.policy import Policy
from mlsyskit.serving.request import Request, RequestStatus
from mlsyskit.serving.scheduler import Scheduler, SchedulerConfig


class OffloadMode(enum.Enum):
    """Where decode attention runs (the CLI's ``--offload``)."""

    NEO = "neo"  # partial offload sized by the load-aware rules
    FASTDECODE = "fastdecode"  # every decode on the host (FastDecode+ baseline)
    FIXED_RATIO = "fixed-ratio"  # a fixed share of requests on the host (static ablation)
    NONE = "none"  # device only (the engine's own scheduler; no NEO scheduler involved)


@dataclass(frozen=True)
class NeoConfig:
    """NEO's knobs.

    Parameters
    ----------
    offload
        ``NEO``, ``FASTDECODE`` or ``FIXED_RATIO`` (``NONE`` is served by the plain engine).
    host_fraction
        ``FIXED_RATIO`` only: the share of running requests kept on the host. New requests go
        to the host while the host holds less than this share; nobody swaps back in, every
        host decode runs every step (no slack rule) and steps with host decodes are pipelined.
        The ablation that load-aware placement is measured against.
    linr_threshold_tokens
        Keep at least this many tokens in a batch when dropping host-destined prefills
        (``linr_S_threshold``, 128 in the paper's code).
    swap_in_watermark
        Swap host decodes back in only while the device holds at most this fraction of its
        blocks (0.95 in the paper's code). ``None`` (default): the device-only engine's own
        readmission limit, ``1 - SchedulerConfig.watermark``, so that when offloading does
        not pay NEO keeps exactly as many requests on the device as the engine it falls
        back to (0.95 left up to 4% of the device idle while requests waited on the host).
    backlog_guard
        Not in the paper's rules: admit host-destined prefills only while the host places
        every request of its queue in this step (a saturated host would only queue them,
        which hurts tail latency on small hosts).
    device_fcfs
        Not in the paper's rules: while host decodes wait to swap in, new prefills do not
        take the device (they may go to the host), so newer requests cannot overtake older
        host-resident ones for the device (FCFS; cuts P90 latency on fast GPUs). Otherwise
        new prefills fill the device up to the device-only engine's admission limit
        (``SchedulerConfig.watermark`` kept free), not to the full pool.
    steady_admission
        Not in the paper's rules: admit host-destined prefills only if the next decode-only
        step would decode every host request, pipelined (:func:`~.plan.host_queue_served`).
        Otherwise a new request would be prefilled now, delaying every device decode, and
        then sit idle in the host pool until it can swap in; the device-only engine would
        let it wait for the device instead, at lower cost.
    mode_rule
        How step 5 picks pipelined vs device-only (:class:`~.plan.ModeRule`): the paper's
        ``THROUGHPUT`` or the latency-aware ``POWER`` (default).
    step_slo_s
        Not in the paper's rules: a latency target for one step, in seconds, on the device
        time of its layers (the quantity the mode choice compares: it leaves out the LM head,
        the per-step overhead and swaps, so a step can run a few percent over it). A
        pipelined step predicted over it is not chosen, whatever ``mode_rule`` says;
        device-only steps are not capped (they are what NEO falls back to), nor is the
        host-only progress step (nothing on the device: the alternative is no progress).
        With ``THROUGHPUT`` this is "the most requests per second that keeps the time per
        output token near the target". ``None``: no target.

    :meth:`paper` gives the paper's rules exactly.
    """

    offload: OffloadMode = OffloadMode.NEO
    linr_threshold_tokens: int = 128
    swap_in_watermark: float | None = None
    backlog_guard: bool = True
    device_fcfs: bool = True
    steady_admission: bool = True
    mode_rule: ModeRule = ModeRule.POWER
    host_fraction: float = 0.5
    step_slo_s: float | None = None

    @classmethod
    def paper(cls, offload: OffloadMode = OffloadMode.NEO) -> NeoConfig:
        """The paper's rules, without this package's additions."""
        return cls(offload=offload, swap_in_watermark=0.95, backlog_guard=False,
                   device_fcfs=False, steady_admission=False, mode_rule=ModeRule.THROUGHPUT)

    @classmethod
    def slo(cls, step_slo_s: float) -> NeoConfig:
        """Latency-target rules: the default guards, the throughput mode rule, and no
        pipelined step predicted longer than ``step_slo_s``."""
        return cls(mode_rule=ModeRule.THROUGHPUT, step_slo_s=step_slo_s)

    def __post_init__(self) -> None:
        if self.offload is OffloadMode.NONE:
            raise ConfigError("OffloadMode.NONE is the device-only engine; build it without NEO")
        if self.swap_in_watermark is not None and not 0 < self.swap_in_watermark <= 1:
            raise ConfigError(f"swap_in_watermark must be in (0, 1]; got {self.swap_in_watermark}")
        if self.linr_threshold_tokens < 0:
            raise ConfigError("linr_threshold_tokens must be >= 0")
        if not 0 < self.host_fraction < 1:
            raise ConfigError(f"host_fraction must be in (0, 1); got {self.host_fraction}")
        if self.step_slo_s is not None and not 0 < self.step_slo_s < math.inf:
            raise ConfigError(f"step_slo_s must be a finite number of seconds > 0; got "
                              f"{self.step_slo_s}")
        if self.step_slo_s is not None and self.offload is not OffloadMode.NEO:
            raise ConfigError(f"step_slo_s steers NEO's mode choice; {self.offload.value} has "
                              "none")

    def max_layer_time(self, num_layers: int) -> float:
        """The per-layer device time a pipelined step may take (``inf`` without a target)."""
        return math.inf if self.step_slo_s is None else self.step_slo_s / num_layers


@dataclass(frozen=True)
class NeoCounters:
    """What NEO decided so far."""

    num_pipelined_steps: int
    num_sequential_steps: int
    num_host_decodes: int
    num_device_decodes: int
    num_swap_ins: int


class NeoScheduler(Scheduler):
    """The engine's scheduler with NEO's placement rules (see the module docstring).

    Requests decoding on the host have status RUNNING like device ones; where their KV lives
    is the block manager's fact (:meth:`NeoBlockManager.on_host`). Prompts are not chunked: a
    prompt must fit ``max_num_batched_tokens``.
    """

    bm: NeoBlockManager

    def __init__(
        self,
        config: SchedulerConfig,
        block_manager: NeoBlockManager,
        policy: Policy,
        costs: LayerCosts,
        neo: NeoConfig | None = None,
    ) -> None:
        super().__init__(config, block_manager, policy)
        self.costs = costs
        self.neo = neo or NeoConfig()
        self.gpu_q: list[Request] = []  # device decodes, by arrival
        self.cpu_q: list[Request] = []  # host decodes, swapped-out first
        self._n_pip = self._n_seq = self._n_hdec = self._n_ddec = self._n_swap_in = 0

    # --- bookkeeping -------------------------------------------------------------------------
    def add(self, request: Request, now: float) -> None:
        if request.api_calls:
            raise ConfigError(f"request {request.request_id}: NEO does not serve API calls")
        if request.num_prompt_tokens > self.config.max_num_batched_tokens:
            raise ConfigError(
                f"request {request.request_id}: prompt of {request.num_prompt_tokens} tokens "
                f"exceeds max_num_batched_tokens={self.config.max_num_batched_tokens} (NEO "
                "does not chunk prompts)"
            )
        max_len = request.num_prompt_tokens + request.sampling.max_tokens
        if self.neo.offload is OffloadMode.FASTDECODE and self.bm.blocks_for(max_len) > (
            self.bm.host.num_blocks
        ):
            raise RequestTooLargeError(
                f"request {request.request_id}: up to {max_len} tokens need "
                f"{self.bm.blocks_for(max_len)} KV blocks; the host pool has "
                f"{self.bm.host.num_blocks} (FastDecode+ keeps every KV on the host)"
            )
        super().add(request, now)

    def abort(self, request_id: str) -> Request | None:
        request = self.requests.get(request_id)
        if request is not None and request.status is RequestStatus.RUNNING:
            for q in (self.gpu_q, self.cpu_q):
                if request in q:
                    q.remove(request)
        return super().abort(request_id)

    def update(self, plan: StepPlan, result: StepResult, now: float) -> list[Request]:
        finished = super().update(plan, result, now)
        if finished:
            self.gpu_q = [r for r in self.gpu_q if r.status is RequestStatus.RUNNING]
            self.cpu_q = [r for r in self.cpu_q if r.status is RequestStatus.RUNNING]
        self.running = self.gpu_q + self.cpu_q
        return finished

    def neo_counters(self) -> NeoCounters:
        return NeoCounters(self._n_pip, self._n_seq, self._n_hdec, self._n_ddec, self._n_swap_in)

    # --- planning ----------------------------------------------------------------------------
    def schedule(self, now: float) -> StepPlan:
        bm = self.bm
        cfg = self.config
        fastdecode = self.neo.offload is OffloadMode.FASTDECODE
        # the static baselines place by a fixed rule: no slack rule, no swap-in
        static = fastdecode or self.neo.offload is OffloadMode.FIXED_RATIO
        swap_out: list[tuple[int, int]] = []
        swap_in: list[tuple[int, int]] = []
        num_dev = bm.device.num_blocks

        def dev_need(r: Request) -> int:
            return bm.blocks_for(r.num_computed_tokens + 1)

        # 1-2. device decodes against the budget; swap the newest out while over it
        gpu_q = self.gpu_q
        if fastdecode:
            while gpu_q:
                self._to_host(gpu_q.pop(), swap_out)
        gpu_need = sum(dev_need(r) for r in gpu_q)
        limit = min(cfg.max_num_seqs, cfg.max_num_batched_tokens)
        while gpu_q and (len(gpu_q) > limit or gpu_need > num_dev):
            victim = gpu_q.pop()
            gpu_need -= dev_need(victim)
            self._to_host(victim, swap_out)
        # 3. swap in, FCFS, below the watermark (never in a step that swapped out)
        if not swap_out and not static:
            mark = self.neo.swap_in_watermark
            high = (mark * num_dev) if mark is not None else num_dev - self._watermark_blocks
            while self.cpu_q and len(gpu_q) < limit:
                cand = self.cpu_q[0]
                need = dev_need(cand)
                if gpu_need + need > high or len(bm.host_blocks_of(cand.request_id)) > (
                    bm.num_free_device_blocks
                ):
                    break
                self.cpu_q.pop(0)
                swap_in.extend(bm.swap_in(cand.request_id))
                self._insert_by_arrival(gpu_q, cand)
                gpu_need += need
                self._n_swap_in += 1
        self._ensure_host_room()
        # 4. admit prefills FCFS
        # device room for prefills: up to the swap-in watermark, and none while older host
        # decodes wait to swap in (they are ahead in FCFS order)
        dev_room = num_dev - gpu_need
        if static:  # nothing swaps in: the device admits as the device-only engine does
            dev_room -= self._watermark_blocks
        elif self.neo.device_fcfs:
            dev_room = 0 if self.cpu_q else num_dev - self._watermark_blocks - gpu_need
        prefills = self._admit_prefills(len(gpu_q), dev_room, fastdecode)
        # 5. decide the batch
        plan_parts = self._decide(prefills, static)
        return self._commit(plan_parts, prefills, swap_out, swap_in)

    def _to_host(self, req: Request, swap_out: list[tuple[int, int]]) -> None:
        """Move a device decode to the front of the host queue (or discard it if no room)."""
        self._n_preempt += 1
        req.num_preemptions += 1
        if self.bm.can_swap_out(req.request_id):
            swap_out.extend(self.bm.swap_out(req.request_id))
            self._n_swap += 1
            self.cpu_q.insert(0, req)
            return
        # host pool full: recompute later, as the device-only engine does
        self._n_fallback += 1
        self.bm.free(req.request_id)
        req.num_computed_tokens = 0
        req.status = RequestStatus.WAITING
        self._push_waiting(req)

    def _ensure_host_room(self) -> None:
        """Discard (for recompute) the newest host decodes while the host pool cannot grow all.

        The paper sizes its host pool so this never happens; a small host (g5.2xlarge has
        32 GB) can fill up, and then, like the device-only engine, NEO recomputes.
        """
        bm = self.bm
        need = sum(
            bm.num_blocks_to_grow_host(r.request_id, r.num_computed_tokens + 1) for r in self.cpu_q
        )
        while self.cpu_q and need > bm.num_free_host_blocks:
            victim = self.cpu_q.pop()
            need -= bm.num_blocks_to_grow_host(victim.request_id, victim.num_computed_tokens + 1)
            self._n_preempt += 1
            victim.num_preemptions += 1
            bm.free(victim.request_id)
            victim.num_computed_tokens = 0
            victim.status = RequestStatus.WAITING
            self._push_waiting(victim)

    @staticmethod
    def _insert_by_arrival(queue: list[Request], req: Request) -> None:
        key = (req.arrival_time, req.seq_no)
        idx = len(queue)
        while idx > 0 and (queue[idx - 1].arrival_time, queue[idx - 1].seq_no) > key:
            idx -= 1
        queue.insert(idx, req)

    def _admit_prefills(
        self, num_decodes: int, dev_free: int, fastdecode: bool
    ) -> list[tuple[Request, bool]]:
        """Pop prefills FCFS; returns ``(request, to_host)`` (not yet allocated)."""
        cfg = self.config
        bm = self.bm
        tokens = num_decodes
        seqs = num_decodes + len(self.cpu_q)
        host_free = bm.num_free_host_blocks - len(self.cpu_q)  # room for host decodes to grow
        went_to_host = fastdecode
        fixed = self.neo.offload is OffloadMode.FIXED_RATIO
        on_host, total = len(self.cpu_q), num_decodes + len(self.cpu_q)
        out: list[tuple[Request, bool]] = []
        waiting = self._waiting
        while waiting:
            req = waiting[0][2]
            if req.status is not RequestStatus.WAITING:
                heapq.heappop(waiting)
                continue
            n = req.num_tokens - req.num_computed_tokens
            if tokens + n > cfg.max_num_batched_tokens or seqs + 1 > cfg.max_num_seqs:
                break
            need = bm.blocks_for(req.num_tokens + 1)
            host_ok = need <= host_free and bm.blocks_for(
                req.num_prompt_tokens + req.sampling.max_tokens
            ) <= bm.host.num_blocks  # it must be able to finish there
            if fixed:  # the host takes a new request while its share is below the target
                want_host = on_host < self.neo.host_fraction * (total + 1)
                if not (host_ok or need <= dev_free):
                    break
                to_host = host_ok and (want_host or need > dev_free)
                if to_host:
                    host_free -= need
                else:
                    dev_free -= need
            elif not went_to_host and need <= dev_free:
                dev_free -= need
                to_host = False
            elif host_ok:
                host_free -= need
                to_host = went_to_host = True
            else:
                break
            heapq.heappop(waiting)
            self._num_waiting -= 1
            out.append((req, to_host))
            on_host += to_host
            total += 1
            tokens += n
            seqs += 1
        return out

    def _decide(
        self, prefills: list[tuple[Request, bool]], static: bool
    ) -> tuple[ExecMode, list[tuple[Request, bool]], list[Request], list[Request]]:
        """Mode, prefills kept, host decodes of b0, host decodes of b1.

        ``static`` (FastDecode+, fixed ratio): every host decode runs, pipelined.
        """
        costs = self.costs
        threshold = self.neo.linr_threshold_tokens
        gpu_q = self.gpu_q
        num_dec = len(gpu_q)
        dec_ctx = sum(r.num_computed_tokens for r in gpu_q) + num_dec
        pref_cost = {id(r): costs.pref(r.num_tokens - r.num_computed_tokens) for r, _ in prefills}

        def load(pre: list[tuple[Request, bool]]) -> SubBatchLoad:
            b = SubBatchLoad(num_tokens=num_dec, num_seqs=num_dec, gdec_tokens=dec_ctx)
            for req, _ in pre:
                b.num_tokens += req.num_tokens - req.num_computed_tokens
                b.num_seqs += 1
                b.pref_s += pref_cost[id(req)]
            return b

        # step 2: the device-only batch drops host-destined prefills while it is wide enough
        # (pop the last prefill; stop at a device prefill or once the rest is narrower than
        # the threshold, keeping the popped one)
        gpu_only = list(prefills)
        while gpu_only and gpu_only[-1][1]:
            trial = gpu_only[:-1]
            if load(trial).num_tokens < threshold:
                break
            gpu_only = trial
        g = load(gpu_only)
        # step 3: add host decodes while both slacks stay >= 0
        guards = self.neo.backlog_guard or self.neo.steady_admission
        if guards and not static and any(h for _, h in prefills):
            device_prefills = [p for p in prefills if not p[1]]
            fill = self._fill_host(load(device_prefills), static)
            # backlog guard: the host keeps up with its queue now; steady admission: and it
            # will keep decoding the new requests once their prefill is done
            ok = fill[4] or not self.neo.backlog_guard
            # (with nothing on the device there is nothing to delay, and a request too large
            # for the device's admission limit could otherwise never start)
            if ok and self.neo.steady_admission and (self.gpu_q or device_prefills):
                ok = self._host_keeps_serving(prefills)
            if ok:
                fill = self._fill_host(load(prefills), static)
            else:  # more host-resident requests would only queue there
                prefills = device_prefills
                gpu_only = [p for p in gpu_only if not p[1]]
                g = load(gpu_only)
        else:
            fill = self._fill_host(load(prefills), static)
        b = [fill[0], fill[1]]
        host = fill[2]
        host_free = fill[3]
        if not host[1]:
            if gpu_only or gpu_q:
                return ExecMode.SEQUENTIAL, gpu_only, [], []
            if prefills:  # only host-destined prefills, too wide for step 2: run them anyway
                return ExecMode.SEQUENTIAL, prefills, [], []
            return self._progress(host_free)
        # step 4: trim host-destined prefills from b0 while slack allows
        kept = list(prefills)
        while kept and kept[-1][1]:
            trial = kept[:-1]
            t0 = load(trial)
            t0.num_tokens += len(host[0])
            t0.num_seqs += len(host[0])
            t0.cdec_seqs, t0.cdec_tokens = b[0].cdec_seqs, b[0].cdec_tokens
            if t0.num_tokens < threshold or min(slacks(costs, t0, b[1])) < 0:
                break
            kept, b[0] = trial, t0
        # step 5: pipelined iff more requests per second of device time
        if static:
            return ExecMode.PIPELINED, kept, host[0], host[1]
        p_time = b[0].gpu_time(costs) + b[1].gpu_time(costs)
        if pipelining_pays(self.neo.mode_rule, g.num_seqs, g.gpu_time(costs),
                           b[0].num_seqs + b[1].num_seqs, p_time,
                           self.neo.max_layer_time(costs.num_layers)):
            return ExecMode.PIPELINED, kept, host[0], host[1]
        return ExecMode.SEQUENTIAL, gpu_only, [], []

    def _host_keeps_serving(self, prefills: list[tuple[Request, bool]]) -> bool:
        """Steady admission: would the next decode-only step serve the whole host queue?

        That step's device decodes are today's plus the device-destined prefills; its host
        decodes are today's host queue plus the host-destined prefills, each one token longer.
        """
        b0 = SubBatchLoad()
        host_ctx = [r.num_computed_tokens + 2 for r in self.cpu_q]
        for req, to_host in [(r, False) for r in self.gpu_q] + prefills:
            ctx = req.num_computed_tokens + 2 if req.status is RequestStatus.RUNNING else (
                req.num_tokens + 1)
            if to_host:
                host_ctx.append(ctx)
            else:
                b0.num_tokens += 1
                b0.num_seqs += 1
                b0.gdec_tokens += ctx
        return host_queue_served(self.costs, b0, host_ctx, self.neo.mode_rule,
                                 self.neo.max_layer_time(self.costs.num_layers))

    def _fill_host(
        self, b0: SubBatchLoad, static: bool
    ) -> tuple[SubBatchLoad, SubBatchLoad, list[list[Request]], int, bool]:
        """Step 3: walk the host queue, placing decodes while both slacks stay >= 0 (``static``:
        every one that fits the budgets, balancing the two sub-batches' host attention).

        Returns both loads, the host decodes per sub-batch, the host blocks left and whether
        every host decode was placed.
        """
        costs = self.costs
        cfg = self.config
        b = [b0, SubBatchLoad()]
        host: list[list[Request]] = [[], []]
        seqs = b0.num_seqs
        tokens = b0.num_tokens
        host_free = self.bm.num_free_host_blocks
        nxt = 1
        rejected_len: int | None = None
        placed = 0
        for req in self.cpu_q:
            if seqs + 1 > cfg.max_num_seqs or tokens + 1 > cfg.max_num_batched_tokens:
                break
            ctx = req.num_computed_tokens + 1
            grow = self.bm.num_blocks_to_grow_host(req.request_id, ctx)
            if grow > host_free:
                continue
            if rejected_len is not None and ctx >= rejected_len and not static:
                continue
            if static:
                nxt = 0 if b[0].cdec_tokens < b[1].cdec_tokens else 1
            sub = b[nxt]
            sub.add_host_decode(ctx)
            r0, r1 = slacks(costs, b[0], b[1])
            if min(r0, r1) < 0 and not static:
                sub.add_host_decode(ctx, count=-1)
                rejected_len = ctx if rejected_len is None else min(rejected_len, ctx)
                continue
            host[nxt].append(req)
            placed += 1
            host_free -= grow
            seqs += 1
            tokens += 1
            nxt = 1 if r1 > r0 else 0
        return b[0], b[1], host, host_free, placed == len(self.cpu_q)

    def _progress(
        self, host_free: int
    ) -> tuple[ExecMode, list[tuple[Request, bool]], list[Request], list[Request]]:
        """Only host decodes are left: run them even though nothing hides their attention.

        Without device work the slack rule rejects every host decode; this guarantee (not in
        the paper's rules, where swap-in would soon refill the device) keeps them going.
        """
        chosen: list[list[Request]] = [[], []]
        budget = min(self.config.max_num_seqs, self.config.max_num_batched_tokens)
        for i, req in enumerate(self.cpu_q[:budget]):
            grow = self.bm.num_blocks_to_grow_host(req.request_id, req.num_computed_tokens + 1)
            if grow > host_free:
                continue
            host_free -= grow
            chosen[1 - i % 2].append(req)
        if not chosen[1]:
            return ExecMode.SEQUENTIAL, [], chosen[0], []
        return ExecMode.PIPELINED, [], chosen[0], chosen[1]

    def _commit(
        self,
        parts: tuple[ExecMode, list[tuple[Request, bool]], list[Request], list[Request]],
        prefills: list[tuple[Request, bool]],
        swap_out: list[tuple[int, int]],
        swap_in: list[tuple[int, int]],
    ) -> NeoStepPlan:
        """Allocate blocks for the chosen batch, requeue the rest, and build the plan."""
        mode, kept, host0, host1 = parts
        bm = self.bm
        kept_ids = {id(r) for r, _ in kept}
        for req, _ in reversed(prefills):
            if id(req) not in kept_ids:
                self._push_waiting(req)
        reqs: list[Request] = []
        news: list[int] = []
        ctxs: list[int] = []
        tables: list[list[int]] = []
        on_host: list[bool] = []
        sub: list[int] = []

        def put(req: Request, n: int, host: bool, sb: int) -> None:
            ctx = req.num_computed_tokens + n
            table = bm.allocate_host(req.request_id, ctx) if host else bm.allocate(
                req.request_id, ctx
            )
            if table is None:
                raise ServingError(f"NEO planned {req.request_id} but its pool had no room")
            reqs.append(req)
            news.append(n)
            ctxs.append(ctx)
            tables.append(table)
            on_host.append(host)
            sub.append(sb)

        for req in self.gpu_q:
            put(req, 1, False, 0)
        for req, host in kept:
            req.status = RequestStatus.RUNNING
            put(req, req.num_tokens - req.num_computed_tokens, host, 0)
            if host:
                self.cpu_q.append(req)
            else:
                self._insert_by_arrival(self.gpu_q, req)
        for sb, group in ((0, host0), (1, host1)):
            for req in group:
                put(req, 1, True, sb)
        self.running = self.gpu_q + self.cpu_q
        self._step += 1
        n_host = len(host0) + len(host1)
        n_dev = sum(1 for h, n in zip(on_host, news, strict=True) if not h and n == 1)
        self._n_hdec += n_host
        self._n_ddec += n_dev
        if mode is ExecMode.PIPELINED:
            self._n_pip += 1
        elif reqs:
            self._n_seq += 1
        plan = NeoStepPlan(
            step_id=self._step,
            requests=reqs,
            num_new_tokens=news,
            context_lens=ctxs,
            block_tables=tables,
            swap_out=swap_out,
            swap_in=swap_in,
            num_batched_tokens=sum(news),
            sum_context_tokens=sum(ctxs),
            sum_attention_pairs=sum(n * c for n, c in zip(news, ctxs, strict=True)),
            on_host=tuple(on_host),
            sub_batch=tuple(sub),
            mode=mode,
        )
        predicted = step_time(plan, self.costs, bm.block_size)
        object.__setattr__(plan, "predicted_s", predicted)
        return plan
