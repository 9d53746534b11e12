"""Calibrate the cost model against the real executor on this machine.

:func:`profile_steps` times :class:`TorchExecutor` steps of chosen shapes (prefill chunks and
decodes over various contexts); :func:`fit_cost_params` fits :class:`CostParams` to them by
least squares on relative error (scipy, non-negative constants); :func:`engine_step_samples`
records the steps of a real engine run, the held-out set the benchmark scores the fit on.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from rich.progress import track

from mlsyskit.serving.executor.base import Executor
from mlsyskit.serving.executor.cost_model import CostModel, CostParams, padded_attention_work
from mlsyskit.serving.kv import BlockManager
from mlsyskit.serving.plan import StepPlan, StepResult
from mlsyskit.serving.request import make_request

if TYPE_CHECKING:
    from mlsyskit.serving.executor.torch_executor import TorchExecutor

BLOCK_SIZE = 16


@dataclass(frozen=True)
class StepSample:
    """One measured step: its shape and how long it took."""

    num_tokens: int
    num_seqs: int
    sum_context: int
    attention_pairs: int
    duration_s: float
    num_prefill_seqs: int = 0

    @classmethod
    def of(cls, plan: StepPlan, duration_s: float, *, padded: bool = True) -> StepSample:
        """The sample of a plan; ``padded`` counts attention as the real executor runs it."""
        sum_ctx, pairs = padded_attention_work(plan) if padded else (
            plan.sum_context_tokens, plan.sum_attention_pairs)
        return cls(plan.num_batched_tokens, len(plan.requests), sum_ctx, pairs, duration_s,
                   sum(1 for n in plan.num_new_tokens if n > 1))


def _random_plan(rng: random.Random, step_id: int, max_context: int) -> StepPlan:
    """A step with a random mix of decodes and prefill chunks over random contexts.

    The context scale is log-uniform, so short steps (what a small engine run mostly makes)
    are profiled as densely as long ones.
    """
    scale = int(math.exp(rng.uniform(math.log(16), math.log(max_context))))
    num_decode = rng.choice([0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32])
    num_prefill = rng.choice([0, 0, 1, 1, 2, 4]) if num_decode else rng.choice([1, 2, 4])
    shapes = [(1, rng.randint(2, max(2, scale))) for _ in range(num_decode)]
    for _ in range(num_prefill):
        n = rng.choice([4, 8, 16, 32, 64, 128, 256])
        shapes.append((n, rng.randint(n, max(n, scale))))
    bm = BlockManager(sum(-(-c // BLOCK_SIZE) for _, c in shapes), 0, BLOCK_SIZE)
    reqs, news, ctxs, tables = [], [], [], []
    for i, (n, ctx) in enumerate(shapes):
        req = make_request(f"p{i}", ctx, 1, prompt_token_ids=[rng.randrange(256)
                                                              for _ in range(ctx)])
        req.num_computed_tokens = ctx - n
        table = bm.allocate(req.request_id, ctx)
        assert table is not None
        reqs.append(req)
        news.append(n)
        ctxs.append(ctx)
        tables.append(table)
    return StepPlan(
        step_id=step_id, requests=reqs, num_new_tokens=news, context_lens=ctxs,
        block_tables=tables, num_batched_tokens=sum(news), sum_context_tokens=sum(ctxs),
        sum_attention_pairs=sum(n * c for n, c in zip(news, ctxs, strict=True)),
        num_prefill_seqs=sum(1 for n in news if n > 1),
    )


def make_profile_executor(model: str, seed: int = 0, max_context: int = 1024) -> TorchExecutor:
    """A real executor whose device pool holds the largest profiled step."""
    from mlsyskit.serving.executor.torch_executor import TorchExecutor

    blocks = 40 * -(-max_context // BLOCK_SIZE)
    return TorchExecutor.from_name(model, num_device_blocks=blocks, num_host_blocks=64,
                                   block_size=BLOCK_SIZE, seed=seed)


def time_plans(executor: Executor, plans: Sequence[StepPlan], *, repeats: int = 5,
               progress: bool = False, cpu_time: bool = True) -> list[StepSample]:
    """Time every plan ``repeats`` times, interleaved, and keep the fastest run of each.

    With ``cpu_time`` (the default) a step's time is the CPU time the process spent on it
    (``time.process_time``): with one torch thread that is the step's work, and time while
    other processes on a shared machine hold the cores does not count. Interleaving spreads
    what interference is left (caches, memory bandwidth) over many plans; the minimum is the
    usual estimator of a step's cost.
    """
    import torch

    clock = time.process_time if cpu_time else time.perf_counter
    best = [float("inf")] * len(plans)
    with torch.no_grad():
        executor.execute(plans[0])  # warm up allocators and kernels
        for _ in track(range(repeats), description="timing steps", disable=not progress,
                       transient=True):
            for i, plan in enumerate(plans):
                started = clock()
                executor.execute(plan)
                best[i] = min(best[i], clock() - started)
    return [StepSample.of(plan, t) for plan, t in zip(plans, best, strict=True)]


def profile_steps(
    model: str = "small",
    *,
    num_samples: int = 60,
    repeats: int = 5,
    max_context: int = 1024,
    seed: int = 0,
    progress: bool = False,
    executor: TorchExecutor | None = None,
    cpu_time: bool = True,
) -> list[StepSample]:
    """Time ``num_samples`` random step shapes (fastest of ``repeats`` interleaved runs)."""
    ex = executor or make_profile_executor(model, seed, max_context)
    rng = random.Random(seed)
    plans = [_random_plan(rng, i, max_context) for i in range(num_samples)]
    return time_plans(ex, plans, repeats=repeats, progress=progress, cpu_time=cpu_time)


def measure_swap_s_per_byte(executor: TorchExecutor, num_blocks: int = 32, repeats: int = 5
                            ) -> float:
    """Seconds per byte of a device-to-host block copy (median over ``repeats``)."""
    host = executor.host_cache
    assert host is not None
    n = min(num_blocks, host.num_blocks, executor.device_cache.num_blocks)
    mapping = [(i, i) for i in range(n)]
    per_block = executor.device_cache.num_bytes / executor.device_cache.num_blocks
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        executor.device_cache.copy_blocks_to(host, mapping)
        times.append(time.perf_counter() - started)
    return statistics.median(times) / (n * per_block)


def split_holdout(
    samples: Sequence[StepSample], *, fraction: float = 0.25, seed: int = 0
) -> tuple[list[StepSample], list[StepSample]]:
    """A seeded (train, test) split."""
    order = list(samples)
    random.Random(seed).shuffle(order)
    k = max(1, int(len(order) * fraction))
    return order[k:], order[:k]


@dataclass(frozen=True)
class CostFit:
    """Fitted constants and their errors (median relative error on train and test)."""

    params: CostParams
    train_median_rel_err: float
    test_median_rel_err: float
    num_train: int
    num_test: int

    def report(self) -> dict[str, float | int]:
        return {
            "train_median_rel_err": self.train_median_rel_err,
            "test_median_rel_err": self.test_median_rel_err,
            "num_train": self.num_train,
            "num_test": self.num_test,
        }


def relative_errors(cost: CostModel, samples: Sequence[StepSample]) -> list[float]:
    """|predicted − measured| / measured per sample."""
    return [
        abs(cost.step_time(s.num_tokens, s.num_seqs, s.sum_context, s.attention_pairs,
                           num_prefill_seqs=s.num_prefill_seqs) - s.duration_s) / s.duration_s
        for s in samples
    ]


_FIELDS = ("overhead_s", "s_per_seq", "s_per_flop", "s_per_attn_flop", "s_per_byte",
           "prefill_overhead_s")


def fit_cost_params(
    model: str,
    train: Sequence[StepSample],
    test: Sequence[StepSample] = (),
    *,
    s_per_link_byte: float = 0.0,
) -> CostFit:
    """Least-squares fit (relative residuals, constants >= 0) of the step-time formula."""
    import numpy as np
    from scipy.optimize import least_squares

    from mlsyskit.serving.model import get_model_config

    shape = get_model_config(model)
    unit = CostModel(shape, CostParams(0, 0, 0, 0, 0))
    feats = np.array([
        [1.0, s.num_seqs, *unit.features(s.num_tokens, s.num_seqs, s.sum_context,
                                         s.attention_pairs)[:3], float(s.num_prefill_seqs > 0)]
        for s in train
    ])
    measured = np.array([s.duration_s for s in train])
    # scale each constant so the optimiser works on O(1) numbers
    scale = np.array([
        float(np.median(measured)) / max(float(np.mean(feats[:, j])), 1e-30)
        for j in range(feats.shape[1])
    ])

    def predict(x: np.ndarray) -> np.ndarray:
        c = x * scale
        compute = feats[:, 2] * c[2] + feats[:, 3] * c[3]
        memory = feats[:, 4] * c[4]
        return c[0] + feats[:, 1] * c[1] + np.maximum(compute, memory) + feats[:, 5] * c[5]

    def residuals(x: np.ndarray) -> np.ndarray:
        return (predict(x) - measured) / measured

    x0 = np.full(len(_FIELDS), 0.2)
    sol = least_squares(residuals, x0, bounds=(0.0, np.inf))
    values = dict(zip(_FIELDS, (float(v) for v in sol.x * scale), strict=True))
    params = CostParams(
        **values, s_per_link_byte=s_per_link_byte,
        source=f"fitted to {len(train)} measured steps of {model} on this machine",
    )
    cost = CostModel(shape, params)
    train_err = statistics.median(relative_errors(cost, train))
    test_err = statistics.median(relative_errors(cost, test)) if test else float("nan")
    return CostFit(params, train_err, test_err, len(train), len(test))


class RecordingExecutor(Executor):
    """Wraps an executor and keeps every plan with work and no swaps, with its time.

    Used to score the cost model on the steps of a real engine run (held-out iterations): the
    recorded plans (block tables copied) can be timed again with :func:`time_plans`.
    """

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.num_device_blocks = inner.num_device_blocks
        self.num_host_blocks = inner.num_host_blocks
        self.block_size = inner.block_size
        self.eos_token_id = inner.eos_token_id
        self.plans: list[StepPlan] = []
        self.samples: list[StepSample] = []

    def execute(self, plan: StepPlan) -> StepResult:
        result = self.inner.execute(plan)
        if plan.requests and not plan.swap_in and not plan.swap_out:
            self.plans.append(replace(plan, block_tables=[list(t) for t in plan.block_tables]))
            self.samples.append(StepSample.of(plan, result.duration_s))
        return result

    def release(self, request_id: str) -> None:
        self.inner.release(request_id)
