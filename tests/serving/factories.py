"""Tiny factories for serving tests (no model, no torch)."""

from __future__ import annotations

from mlsyskit.serving.kv import BlockManager
from mlsyskit.serving.plan import StepPlan, StepResult
from mlsyskit.serving.policy import FCFSPolicy, Policy
from mlsyskit.serving.request import Request, make_request
from mlsyskit.serving.scheduler import Scheduler, SchedulerConfig


def create_scheduler(
    *,
    num_device_blocks: int = 16,
    num_host_blocks: int = 16,
    block_size: int = 4,
    max_num_seqs: int = 8,
    max_num_batched_tokens: int = 64,
    chunked: bool = True,
    policy: Policy | None = None,
    watermark: float = 0.0,
) -> Scheduler:
    config = SchedulerConfig(
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        enable_chunked_prefill=chunked,
        watermark=watermark,
    )
    bm = BlockManager(num_device_blocks, num_host_blocks, block_size)
    return Scheduler(config, bm, policy or FCFSPolicy())


def create_requests(
    lengths: list[tuple[int, int]], *, start: float = 0.0, gap: float = 0.0
) -> list[Request]:
    """Requests ``r0, r1, ...`` with (prompt tokens, output tokens) and prompt ids 0..n-1."""
    return [
        make_request(
            f"r{i}", p, o, arrival_time=start + i * gap, prompt_token_ids=list(range(p))
        )
        for i, (p, o) in enumerate(lengths)
    ]


def fake_result(plan: StepPlan, token: int = 7, duration_s: float = 0.01) -> StepResult:
    """A model output: the same token for every sequence."""
    return StepResult(plan.step_id, [token] * len(plan.requests), duration_s)


def run_to_completion(scheduler: Scheduler, max_steps: int = 10_000) -> list[StepPlan]:
    """Step a scheduler with fake results until nothing is left; returns the plans."""
    plans = []
    now = 0.0
    for _ in range(max_steps):
        if not scheduler.has_unfinished():
            return plans
        plan = scheduler.schedule(now)
        now += 0.01
        scheduler.update(plan, fake_result(plan), now)
        scheduler.bm.check_invariants()
        plans.append(plan)
    raise AssertionError("scheduler did not finish")
