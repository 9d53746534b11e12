"""The engine loop: ``schedule -> execute -> update``, the same for real and simulated runs.

:class:`Engine` is what a server or a benchmark talks to. It owns a clock, a
:class:`~mlsyskit.serving.scheduler.Scheduler` (with its block manager and policy) and an
:class:`~mlsyskit.serving.executor.base.Executor`. :func:`build_engine` makes one from names.

The engine is not re-entrant: call it from one thread, or hold :attr:`Engine.lock` (every public
method takes it, so a server may add or abort requests from another thread between steps).
"""

from __future__ import annotations

import enum
import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mlsyskit.errors import ConfigError
from mlsyskit.serving.clock import Clock, SimClock, WallClock
from mlsyskit.serving.executor.base import Executor
from mlsyskit.serving.kv import BlockManager
from mlsyskit.serving.policy import Policy, PolicyName, make_policy
from mlsyskit.serving.request import ApiCall, FinishReason, Request, SamplingParams
from mlsyskit.serving.scheduler import Scheduler, SchedulerConfig


@dataclass(frozen=True)
class RequestOutput:
    """New tokens of one request after one step."""

    request_id: str
    new_token_ids: list[int]
    finished: bool
    finish_reason: FinishReason | None


@dataclass(frozen=True)
class EngineStats:
    """A snapshot of queues, KV usage and cumulative token counts."""

    now_s: float
    num_waiting: int
    num_running: int
    num_swapped: int
    num_paused: int
    device_blocks_used: int
    device_blocks_total: int
    host_blocks_used: int
    host_blocks_total: int
    num_steps: int
    num_prompt_tokens: int
    num_computed_tokens: int
    num_generated_tokens: int
    num_preemptions: int
    num_swap_outs: int
    num_finished: int

    @property
    def device_kv_usage(self) -> float:
        """Fraction of device KV blocks in use."""
        total = self.device_blocks_total
        return self.device_blocks_used / total if total else 0.0


class Engine:
    """Serve requests with continuous batching on an executor.

    Parameters
    ----------
    executor
        Runs steps (real or simulated); its KV pool sizes size the block manager.
    policy
        Serving policy (ordering, victims, KV actions).
    config
        Batching limits; its ``eos_token_id`` defaults to the executor's.
    clock
        Time source: a :class:`SimClock` for simulation, a :class:`WallClock` otherwise.
    """

    def __init__(
        self,
        executor: Executor,
        policy: Policy,
        config: SchedulerConfig | None = None,
        clock: Clock | None = None,
    ) -> None:
        config = config or SchedulerConfig()
        if config.eos_token_id is None and executor.eos_token_id is not None:
            config = replace(config, eos_token_id=executor.eos_token_id)
        self.executor = executor
        self.policy = policy
        self.config = config
        self.clock: Clock = clock or WallClock()
        self.block_manager = BlockManager(
            executor.num_device_blocks, executor.num_host_blocks, executor.block_size
        )
        self.scheduler = Scheduler(config, self.block_manager, policy)
        self.lock = threading.RLock()
        self._ids = itertools.count()
        #: whether the last step found nothing to run (the simulator then jumps in time)
        self.last_step_idle = False

    # --- requests --------------------------------------------------------------------------
    def add_request(
        self,
        prompt_token_ids: Sequence[int] | None = None,
        sampling: SamplingParams | None = None,
        *,
        request_id: str | None = None,
        num_prompt_tokens: int | None = None,
        arrival_time: float | None = None,
        api_calls: Sequence[ApiCall] = (),
        output_len_hint: int | None = None,
    ) -> str:
        """Queue a request and return its id.

        Give ``prompt_token_ids`` (real executor) or only ``num_prompt_tokens`` (simulation).
        ``arrival_time`` defaults to the clock's now. Raises
        :class:`~mlsyskit.serving.errors.RequestTooLargeError` if it could never fit.
        """
        if prompt_token_ids is None and num_prompt_tokens is None:
            raise ConfigError("a request needs prompt_token_ids or num_prompt_tokens")
        n_prompt = len(prompt_token_ids) if prompt_token_ids is not None else num_prompt_tokens
        assert n_prompt is not None
        with self.lock:
            rid = request_id if request_id is not None else f"req-{next(self._ids)}"
            request = Request(
                request_id=rid,
                num_prompt_tokens=n_prompt,
                sampling=sampling or SamplingParams(),
                arrival_time=self.clock.now() if arrival_time is None else arrival_time,
                prompt_token_ids=list(prompt_token_ids) if prompt_token_ids is not None else None,
                api_calls=tuple(api_calls),
                output_len_hint=output_len_hint,
            )
            self.scheduler.add(request, self.clock.now())
        return rid

    def abort(self, request_id: str) -> bool:
        """Stop a request and free its KV; ``False`` if it is unknown or already finished."""
        with self.lock:
            request = self.scheduler.abort(request_id)
            if request is not None:
                request.finish_time = self.clock.now()
                self.executor.release(request_id)
            return request is not None

    def has_unfinished(self) -> bool:
        return self.scheduler.has_unfinished()

    def get_request(self, request_id: str) -> Request | None:
        """An unfinished request by id (read-only use)."""
        return self.scheduler.requests.get(request_id)

    # --- stepping --------------------------------------------------------------------------
    def run_step(self) -> list[Request]:
        """One iteration; returns the requests that finished in it (no per-token outputs).

        This is the lean path the simulator uses; :meth:`step` adds :class:`RequestOutput`s.
        """
        with self.lock:
            return self._step(None)

    def step(self) -> list[RequestOutput]:
        """One iteration; returns the new token of every request that got one this step."""
        with self.lock:
            outputs: list[RequestOutput] = []
            self._step(outputs)
            return outputs

    def _step(self, outputs: list[RequestOutput] | None) -> list[Request]:
        now = self.clock.now()
        plan = self.scheduler.schedule(now)
        if plan.is_empty:
            self.last_step_idle = True
            return []
        self.last_step_idle = False
        result = self.executor.execute(plan)
        self.clock.advance(result.duration_s)
        end = self.clock.now()
        sampled = None
        if outputs is not None:
            sampled = [plan.samples(i) for i in range(len(plan.requests))]
        finished = self.scheduler.update(plan, result, end)
        for req in finished:
            req.finish_time = end
            self.executor.release(req.request_id)
        if outputs is not None and sampled is not None:
            for idx, req in enumerate(plan.requests):
                if sampled[idx]:
                    outputs.append(
                        RequestOutput(
                            req.request_id,
                            [result.token_ids[idx]],
                            req.is_finished,
                            req.finish_reason,
                        )
                    )
        return finished

    def next_event_time(self) -> float | None:
        """When something becomes runnable without a new arrival (an API call returns)."""
        return self.scheduler.next_resume_time()

    def stats(self) -> EngineStats:
        """Queue lengths, KV usage and cumulative counters now."""
        with self.lock:
            s = self.scheduler
            c = s.counters()
            bm = self.block_manager
            return EngineStats(
                now_s=self.clock.now(),
                num_waiting=s.num_waiting,
                num_running=len(s.running),
                num_swapped=s.num_swapped,
                num_paused=s.num_paused,
                device_blocks_used=bm.device.num_used,
                device_blocks_total=bm.device.num_blocks,
                host_blocks_used=bm.host.num_used,
                host_blocks_total=bm.host.num_blocks,
                num_steps=c.num_steps,
                num_prompt_tokens=c.num_prompt_tokens,
                num_computed_tokens=c.num_computed_tokens,
                num_generated_tokens=c.num_generated_tokens,
                num_preemptions=c.num_preemptions,
                num_swap_outs=c.num_swap_outs,
                num_finished=c.num_finished,
            )


class ExecutorKind(enum.Enum):
    """Which executor :func:`build_engine` makes."""

    TORCH = "torch"
    SIM = "sim"


def build_engine(
    model: str = "tiny",
    policy: PolicyName | str | Policy = "fcfs",
    *,
    executor: ExecutorKind | str = ExecutorKind.TORCH,
    hardware: str = "a10g",
    tp: int = 1,
    block_size: int = 16,
    num_device_blocks: int | None = None,
    num_host_blocks: int | None = None,
    max_num_seqs: int = 64,
    max_num_batched_tokens: int = 512,
    enable_chunked_prefill: bool = True,
    checkpoint: Path | None = None,
    cost_params_path: Path | None = None,
    seed: int = 0,
    clock: Clock | None = None,
    policy_kwargs: dict[str, Any] | None = None,
) -> Engine:
    """An engine from names.

    Parameters
    ----------
    model
        A preset of :func:`mlsyskit.serving.model.get_model_config` ("tiny", "small",
        "llama-3-8b", ...); ignored for the shape when ``checkpoint`` is given.
    policy
        A registered policy name (see :class:`PolicyName`) or a policy object.
    executor
        ``torch``: run the model for real on this machine's CPU (random weights from ``seed``,
        or ``checkpoint``); ``sim``: price steps on ``tp`` × ``hardware`` GPUs with a simulated
        clock (no weights are allocated).
    num_device_blocks, num_host_blocks
        KV pool sizes; defaults: 256 / 256 blocks (torch), from GPU memory and 4 GiB of swap
        space (sim).
    cost_params_path
        Fitted cost constants (``mlsyskit serve profile``) for the simulator instead of the
        roofline defaults of ``hardware``.
    """
    kind = ExecutorKind(executor) if isinstance(executor, str) else executor
    pol = policy if isinstance(policy, Policy) else make_policy(policy, **(policy_kwargs or {}))
    from mlsyskit.serving.model import get_model_config

    config = SchedulerConfig(
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        enable_chunked_prefill=enable_chunked_prefill,
    )

    ex: Executor
    if kind is ExecutorKind.SIM:
        from mlsyskit.serving.executor.cost_model import CostParams
        from mlsyskit.serving.executor.sim import SimExecutor

        params = CostParams.from_json(cost_params_path) if cost_params_path else None
        sim = SimExecutor.for_hardware(
            get_model_config(model), hardware, tp=tp, block_size=block_size, params=params,
            num_device_blocks=num_device_blocks, seed=seed,
        )
        if num_host_blocks is not None:
            sim.num_host_blocks = num_host_blocks
        ex = sim
        clock = clock or SimClock()
    else:
        from mlsyskit.serving.executor.torch_executor import TorchExecutor

        ex = TorchExecutor.from_name(
            model,
            checkpoint=checkpoint,
            num_device_blocks=256 if num_device_blocks is None else num_device_blocks,
            num_host_blocks=256 if num_host_blocks is None else num_host_blocks,
            block_size=block_size,
            seed=seed,
        )
        clock = clock or WallClock()
    max_len = getattr(getattr(ex, "model", None), "config", None)
    max_position = max_len.max_position if max_len is not None else get_model_config(
        model).max_position
    config = replace(config, max_model_len=max_position)
    return Engine(ex, pol, config, clock)
