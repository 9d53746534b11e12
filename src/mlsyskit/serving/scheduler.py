"""Iteration-level continuous batching over the block manager, driven by a :class:`Policy`.

Each call of :meth:`Scheduler.schedule` builds one :class:`StepPlan`:

1. requests whose API call returned are put back (running if their KV stayed on the device);
2. a preemptive policy may evict running requests for better waiting ones;
3. running requests, best first, get their next tokens within the token budget; when the
   device pool is full the policy names a victim, which is swapped out or discarded;
4. waiting and swapped requests are admitted, best first, while budget, sequence slots and
   blocks last (none if step 3 had to preempt, so nobody is evicted and readmitted at once).

:meth:`Scheduler.update` folds a :class:`StepResult` back: counters, sampled tokens, stops, API
pauses. The work per step is O(batch) plus O(log n) per admission (the waiting queue is a heap
on static priorities), so the simulator can run thousands of requests per wall-clock second.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from operator import attrgetter

from mlsyskit.errors import ConfigError
from mlsyskit.serving.errors import RequestTooLargeError, ServingError
from mlsyskit.serving.kv import BlockManager
from mlsyskit.serving.plan import StepPlan, StepResult
from mlsyskit.serving.policy import KVAction, Policy
from mlsyskit.serving.request import Request, RequestStatus

_SORT_KEY = attrgetter("sort_key")
#: token id placed in the context for the tokens an API call returns (their text is not modelled)
API_RETURN_TOKEN_ID = 0


@dataclass(frozen=True)
class SchedulerConfig:
    """Batching limits.

    Parameters
    ----------
    max_num_seqs
        Requests in one batch at most (vLLM's ``max_num_seqs``).
    max_num_batched_tokens
        New tokens in one batch at most (the token budget).
    enable_chunked_prefill
        Split a prompt over several steps to fit the budget; without it a prompt is admitted
        only when it fits the remaining budget whole.
    watermark
        Fraction of device blocks kept free when admitting new requests, so running requests
        can grow a little without immediate preemption.
    eos_token_id
        Token that stops a request (unless it sets ``ignore_eos``); ``None``: never.
    max_model_len
        Longest context a request may reach (prompt + output + API tokens); ``None``: no cap
        beyond the device pool.
    """

    max_num_seqs: int = 256
    max_num_batched_tokens: int = 2048
    enable_chunked_prefill: bool = True
    watermark: float = 0.01
    eos_token_id: int | None = None
    max_model_len: int | None = None

    def __post_init__(self) -> None:
        if self.max_num_seqs < 1 or self.max_num_batched_tokens < 1:
            raise ConfigError("max_num_seqs and max_num_batched_tokens must be >= 1")
        if not 0 <= self.watermark < 1:
            raise ConfigError(f"watermark must be in [0, 1); got {self.watermark}")


@dataclass(frozen=True)
class SchedulerCounters:
    """Cumulative counts since the scheduler was made."""

    num_steps: int
    num_prompt_tokens: int
    num_computed_tokens: int
    num_generated_tokens: int
    num_preemptions: int
    num_swap_outs: int
    num_swap_fallbacks: int
    num_finished: int


class Scheduler:
    """Continuous batching with preemption; see the module docstring for one step's order."""

    def __init__(
        self, config: SchedulerConfig, block_manager: BlockManager, policy: Policy
    ) -> None:
        self.config = config
        self.bm = block_manager
        self.policy = policy
        self.requests: dict[str, Request] = {}
        self.running: list[Request] = []
        self._waiting: list[tuple[tuple[float, ...], int, Request]] = []
        self._paused: list[tuple[float, int, Request]] = []
        self._pending_swap_out: list[tuple[int, int]] = []
        self._running_sorted = True
        self._seq = 0
        self._step = 0
        self._watermark_blocks = int(config.watermark * block_manager.device.num_blocks)
        self._n_prompt = self._n_computed = self._n_generated = 0
        self._n_preempt = self._n_swap = self._n_fallback = self._n_finished = 0
        self._num_waiting = self._num_swapped = 0
        # waiting requests that still hold device blocks (KV preserved over an API call)
        self._idle_holders: dict[str, Request] = {}
        # skip the call per step when the policy does not override the hook
        self._observes = type(policy).observe is not Policy.observe

    # --- requests in and out -------------------------------------------------------------
    def add(self, request: Request, now: float) -> None:
        """Queue a new request (raises if it could never fit the device pool)."""
        if request.request_id in self.requests:
            raise ConfigError(f"duplicate request id {request.request_id!r}")
        max_len = (
            request.num_prompt_tokens
            + request.sampling.max_tokens
            + sum(c.num_return_tokens for c in request.api_calls)
        )
        limit = self.config.max_model_len
        if limit is not None and max_len > limit:
            raise RequestTooLargeError(
                f"request {request.request_id}: up to {max_len} tokens exceed the model's "
                f"max_model_len={limit}"
            )
        if self.bm.blocks_for(max_len) > self.bm.device.num_blocks:
            raise RequestTooLargeError(
                f"request {request.request_id}: up to {max_len} tokens need "
                f"{self.bm.blocks_for(max_len)} KV blocks; the device pool has "
                f"{self.bm.device.num_blocks}"
            )
        if (
            not self.config.enable_chunked_prefill
            and max_len > self.config.max_num_batched_tokens
        ):
            raise RequestTooLargeError(
                f"request {request.request_id}: up to {max_len} tokens exceed "
                f"max_num_batched_tokens={self.config.max_num_batched_tokens} without chunked "
                "prefill (a recompute could never be scheduled)"
            )
        self._seq += 1
        request.seq_no = self._seq
        request.status = RequestStatus.WAITING
        self.requests[request.request_id] = request
        self.policy.on_arrival(request)
        request.sort_key = self.policy.priority(request, now)
        self._push_waiting(request)
        self._n_prompt += request.num_prompt_tokens

    def abort(self, request_id: str) -> Request | None:
        """Finish a request as aborted, freeing its blocks; ``None`` if unknown or finished."""
        request = self.requests.get(request_id)
        if request is None:
            return None
        if request.status is RequestStatus.RUNNING:
            self.running.remove(request)
        elif request.status is RequestStatus.WAITING:
            self._num_waiting -= 1
            self._idle_holders.pop(request_id, None)
        elif request.status is RequestStatus.SWAPPED:
            self._num_swapped -= 1
        # queued entries of an aborted request are skipped lazily when they surface
        self._finish(request, RequestStatus.FINISHED_ABORTED)
        return request

    def has_unfinished(self) -> bool:
        return bool(self.requests)

    @property
    def num_waiting(self) -> int:
        return self._num_waiting

    @property
    def num_swapped(self) -> int:
        return self._num_swapped

    @property
    def num_paused(self) -> int:
        return len(self.requests) - len(self.running) - self._num_waiting - self._num_swapped

    def next_resume_time(self) -> float | None:
        """When the earliest paused request's API call returns (``None``: nobody paused)."""
        while self._paused and self._paused[0][2].status is not RequestStatus.PAUSED:
            heapq.heappop(self._paused)
        return self._paused[0][0] if self._paused else None

    def counters(self) -> SchedulerCounters:
        return SchedulerCounters(
            num_steps=self._step,
            num_prompt_tokens=self._n_prompt,
            num_computed_tokens=self._n_computed,
            num_generated_tokens=self._n_generated,
            num_preemptions=self._n_preempt,
            num_swap_outs=self._n_swap,
            num_swap_fallbacks=self._n_fallback,
            num_finished=self._n_finished,
        )

    # --- planning ------------------------------------------------------------------------
    def schedule(self, now: float) -> StepPlan:
        """Plan one step at time ``now`` (see the module docstring)."""
        if self._paused:
            self._resume_returned(now)
        if self.policy.dynamic:
            self._refresh_priorities(now)
        running = self.running
        if not self._running_sorted:
            running.sort(key=_SORT_KEY)
            self._running_sorted = True
        swap_out = self._pending_swap_out
        self._pending_swap_out = []
        if self.policy.preemptive and self._waiting and running:
            self._preempt_for_waiting(swap_out)

        bm = self.bm
        dev_tables = bm.device_tables
        block_size = bm.block_size
        budget = self.config.max_num_batched_tokens
        chunked = self.config.enable_chunked_prefill
        reqs: list[Request] = []
        news: list[int] = []
        ctxs: list[int] = []
        tables: list[list[int]] = []
        sum_ctx = pairs = n_prefill = 0
        preempted = False
        i = 0
        while i < len(running) and budget > 0:
            req = running[i]
            n = req.num_tokens - req.num_computed_tokens
            if n > budget:
                if not chunked:
                    i += 1
                    continue
                n = budget
            ctx = req.num_computed_tokens + n
            table = dev_tables.get(req.request_id)
            if table is None or len(table) * block_size < ctx:  # fast path: no new block
                table = bm.allocate(req.request_id, ctx)
            while table is None and self._idle_holders:
                self._evict_idle_holder(swap_out)
                table = bm.allocate(req.request_id, ctx)
            while table is None:
                candidates = running[i:]
                victim = self.policy.choose_victim(candidates, req)
                if victim is None or victim not in candidates:
                    raise ServingError(
                        f"policy {self.policy.name} named {victim and victim.request_id!r} as "
                        f"victim for running request {req.request_id}, which needs a block; "
                        "it must name one of the candidates it was given"
                    )
                self._preempt(victim, swap_out)
                preempted = True
                if victim is req:
                    break
                table = bm.allocate(req.request_id, ctx)
            if table is None:
                continue  # req preempted itself; running[i] is now the next one
            reqs.append(req)
            news.append(n)
            ctxs.append(ctx)
            tables.append(table)
            sum_ctx += ctx
            pairs += n * ctx
            if n > 1:
                n_prefill += 1
            budget -= n
            i += 1

        swap_in: list[tuple[int, int]] = []
        if not preempted and self._waiting and len(running) < self.config.max_num_seqs:
            first_admitted = len(reqs)
            budget = self._admit(budget, reqs, news, ctxs, tables, swap_in, swap_out)
            for k in range(first_admitted, len(reqs)):
                sum_ctx += ctxs[k]
                pairs += news[k] * ctxs[k]
                if news[k] > 1:
                    n_prefill += 1
        self._step += 1
        num_batched = self.config.max_num_batched_tokens - budget
        return StepPlan(
            step_id=self._step,
            requests=reqs,
            num_new_tokens=news,
            context_lens=ctxs,
            block_tables=tables,
            swap_out=swap_out,
            swap_in=swap_in,
            num_batched_tokens=num_batched,
            sum_context_tokens=sum_ctx,
            sum_attention_pairs=pairs,
            hidden_layers=self.policy.hidden_layers,
            num_prefill_seqs=n_prefill,
        )

    def _admit(
        self,
        budget: int,
        reqs: list[Request],
        news: list[int],
        ctxs: list[int],
        tables: list[list[int]],
        swap_in: list[tuple[int, int]],
        swap_out: list[tuple[int, int]],
    ) -> int:
        """Admit waiting/swapped requests, best first, while budget, slots and blocks last.

        Blocks still held by lower-priority waiting requests (KV preserved over an API call)
        are reclaimed for the head of the queue rather than left idle.
        """
        bm = self.bm
        chunked = self.config.enable_chunked_prefill
        max_seqs = self.config.max_num_seqs
        waiting = self._waiting
        running = self.running
        reserve = self._watermark_blocks
        while waiting and budget > 0 and len(running) < max_seqs:
            req = waiting[0][2]
            status = req.status
            if status is not RequestStatus.WAITING and status is not RequestStatus.SWAPPED:
                heapq.heappop(waiting)  # stale entry (aborted, or already readmitted)
                continue
            n = req.num_tokens - req.num_computed_tokens
            if n > budget:
                if not chunked:
                    break
                n = budget
            ctx = req.num_computed_tokens + n
            rid = req.request_id
            if status is RequestStatus.SWAPPED:
                need = max(len(bm.host_blocks_of(rid)), bm.blocks_for(ctx))
            else:
                need = bm.num_blocks_to_grow(rid, ctx)
            if need + reserve > bm.num_free_device_blocks:
                if any(holder is not req for holder in self._idle_holders.values()):
                    self._evict_idle_holder(swap_out, keep=req)
                    continue
                break
            if status is RequestStatus.SWAPPED:
                swap_in.extend(bm.swap_in(rid))
                self._num_swapped -= 1
            else:  # new, recomputing, or back from an API call with its KV preserved
                self._num_waiting -= 1
                self._idle_holders.pop(rid, None)
            table = bm.allocate(rid, ctx)
            if table is None:  # pragma: no cover - checked just above
                raise ServingError(f"admission of {rid} lost its blocks")
            heapq.heappop(waiting)
            req.status = RequestStatus.RUNNING
            running.append(req)
            self._running_sorted = False
            reqs.append(req)
            news.append(n)
            ctxs.append(ctx)
            tables.append(table)
            budget -= n
        return budget

    def _push_waiting(self, request: Request) -> None:
        if request.status is RequestStatus.SWAPPED:
            self._num_swapped += 1
        else:
            self._num_waiting += 1
        heapq.heappush(self._waiting, (request.sort_key, request.seq_no, request))

    def _preempt(self, victim: Request, swap_out: list[tuple[int, int]]) -> None:
        """Take ``victim`` off the device: swap its KV out or discard it, and requeue it."""
        self.running.remove(victim)
        self._n_preempt += 1
        victim.num_preemptions += 1
        self._evict(victim, self.policy.preemption_action(victim), swap_out)
        self._push_waiting(victim)

    def _evict_idle_holder(
        self, swap_out: list[tuple[int, int]], keep: Request | None = None
    ) -> None:
        """Evict the KV of the lowest-priority waiting request that still holds device blocks
        (other than ``keep``)."""
        rid, req = max(
            ((k, r) for k, r in self._idle_holders.items() if r is not keep),
            key=lambda item: item[1].sort_key,
        )
        del self._idle_holders[rid]
        self._n_preempt += 1
        req.num_preemptions += 1
        self._evict(req, self.policy.preemption_action(req), swap_out)
        if req.status is RequestStatus.SWAPPED:  # it stays queued, now counted as swapped
            self._num_waiting -= 1
            self._num_swapped += 1

    def _evict(self, req: Request, action: KVAction, swap_out: list[tuple[int, int]]) -> None:
        """Apply a KV action to a request leaving the device; sets its status accordingly."""
        if action is KVAction.SWAP:
            if self.bm.can_swap_out(req.request_id):
                swap_out.extend(self.bm.swap_out(req.request_id))
                self._n_swap += 1
                req.status = RequestStatus.SWAPPED
                return
            self._n_fallback += 1
        if action is KVAction.PRESERVE:
            req.status = RequestStatus.PAUSED
            return
        self.bm.free(req.request_id)
        req.num_computed_tokens = 0
        req.status = RequestStatus.WAITING

    def _preempt_for_waiting(self, swap_out: list[tuple[int, int]]) -> None:
        """Let a preemptive policy evict running requests for better waiting ones."""
        bm = self.bm
        running = self.running
        while self._waiting and running:
            head = self._waiting[0][2]
            if head.status is not RequestStatus.WAITING and head.status is not (
                RequestStatus.SWAPPED
            ):
                heapq.heappop(self._waiting)
                continue
            need = bm.blocks_for(head.num_tokens) + self._watermark_blocks
            if len(running) < self.config.max_num_seqs and need <= bm.num_free_device_blocks:
                return
            victim = self.policy.choose_victim(running, head)
            if victim is None:
                return
            self._preempt(victim, swap_out)

    def _refresh_priorities(self, now: float) -> None:
        policy = self.policy
        for req in self.running:
            req.sort_key = policy.priority(req, now)
        self._running_sorted = False
        live = []
        for _key, seq, req in self._waiting:
            if req.status is RequestStatus.WAITING or req.status is RequestStatus.SWAPPED:
                req.sort_key = policy.priority(req, now)
                live.append((req.sort_key, seq, req))
        heapq.heapify(live)
        self._waiting = live

    def _resume_returned(self, now: float) -> None:
        paused = self._paused
        while paused and paused[0][0] <= now:
            _t, _seq, req = heapq.heappop(paused)
            if req.status is not RequestStatus.PAUSED:
                continue
            call = req.api_calls[req.next_api_index]
            req.next_api_index += 1
            if call.num_return_tokens:
                req.num_tokens += call.num_return_tokens
                if req.token_ids is not None:
                    req.token_ids.extend([API_RETURN_TOKEN_ID] * call.num_return_tokens)
            rid = req.request_id
            if self.bm.host_blocks_of(rid):
                req.status = RequestStatus.SWAPPED
                self._push_waiting(req)
            elif self.bm.device_blocks_of(rid):
                # KV preserved: it queues with its blocks (admission respects max_num_seqs);
                # if running requests run out of blocks first, its KV is evicted then
                req.status = RequestStatus.WAITING
                self._push_waiting(req)
                self._idle_holders[rid] = req
            else:
                req.num_computed_tokens = 0
                req.status = RequestStatus.WAITING
                self._push_waiting(req)

    # --- folding results back --------------------------------------------------------------
    def update(self, plan: StepPlan, result: StepResult, now: float) -> list[Request]:
        """Apply a step's result at time ``now``; returns the requests that finished.

        A request gets a token only when its cache caught up with all its known tokens (the
        last chunk of a prompt, or a decode step); the token counts as generated at ``now``.
        """
        eos = self.config.eos_token_id
        finished: list[Request] = []
        left_running = False
        tokens = result.token_ids
        n_computed = 0
        n_generated = 0
        for idx, req in enumerate(plan.requests):
            n = plan.num_new_tokens[idx]
            n_computed += n
            req.num_computed_tokens += n
            if req.num_computed_tokens < req.num_tokens or req.status is not RequestStatus.RUNNING:
                continue
            token = tokens[idx]
            out = req.output_token_ids
            out.append(token)
            if req.token_ids is not None:
                req.token_ids.append(token)
            req.num_tokens += 1
            n_generated += 1
            if req.first_token_time is None:
                req.first_token_time = now
            if token == eos and not req.sampling.ignore_eos:
                self._finish(req, RequestStatus.FINISHED_STOPPED)
            elif len(out) >= req.sampling.max_tokens:
                self._finish(req, RequestStatus.FINISHED_LENGTH)
            elif req.api_calls and self._maybe_pause(req, now):
                pass
            else:
                continue
            left_running = True
            if req.is_finished:
                finished.append(req)
        if left_running:
            self.running = [r for r in self.running if r.status is RequestStatus.RUNNING]
        self._n_computed += n_computed
        self._n_generated += n_generated
        if self._observes:
            self.policy.observe(result, plan.requests)
        return finished

    def _maybe_pause(self, req: Request, now: float) -> bool:
        call = req.next_api_call
        if call is None or len(req.output_token_ids) != call.after_num_output_tokens:
            return False
        action = self.policy.kv_action(req, call)
        self._evict(req, action, self._pending_swap_out)
        # the status the request resumes into is decided on return; PAUSED marks "in a call"
        req.status = RequestStatus.PAUSED
        req.resume_time = now + call.duration_s
        heapq.heappush(self._paused, (req.resume_time, req.seq_no, req))
        return True

    def _finish(self, req: Request, status: RequestStatus) -> None:
        req.status = status
        self.bm.free(req.request_id)
        del self.requests[req.request_id]
        self._n_finished += 1

    def all_requests(self) -> Iterable[Request]:
        return self.requests.values()
