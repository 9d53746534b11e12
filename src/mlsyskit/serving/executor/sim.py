"""The simulated executor: prices each plan with a :class:`CostModel` instead of running it."""

from __future__ import annotations

import random

from mlsyskit.errors import ConfigError
from mlsyskit.hardware import GPU, get_catalogue
from mlsyskit.serving.executor.base import Executor
from mlsyskit.serving.executor.cost_model import (
    CostModel,
    CostParams,
    ModelShape,
    padded_attention_work,
)
from mlsyskit.serving.plan import StepPlan, StepResult

GIB = 1024**3
#: the id a simulated "model" emits for every token (it never emits an end-of-sequence)
SIM_TOKEN_ID = 1


def device_kv_blocks(
    model: ModelShape,
    gpu: GPU,
    *,
    block_size: int,
    tp: int = 1,
    gpu_memory_utilization: float = 0.9,
    activation_reserve_gib: float = 1.0,
) -> int:
    """KV blocks that fit next to the weights: like vLLM's profiling, but from the shape.

    Per GPU: ``memory × utilization − weights / tp − activation reserve``; the KV heads are
    split over the ``tp`` GPUs, so the pool adds up over them.

    Raises
    ------
    ConfigError
        If the weights (and reserve) do not fit at all.
    """
    free = gpu.memory_bytes * gpu_memory_utilization - model.weight_bytes / tp
    free -= activation_reserve_gib * GIB
    if free <= 0:
        raise ConfigError(
            f"{model.name} ({model.weight_bytes / GIB:.1f} GiB of weights) does not fit on "
            f"{tp} x {gpu.name} ({gpu.memory_gib} GiB, utilization {gpu_memory_utilization})"
        )
    per_block = model.kv_bytes_per_token / tp * block_size
    return int(free // per_block)


class SimExecutor(Executor):
    """Advances nothing itself: returns the cost model's step time as ``duration_s``.

    Parameters
    ----------
    cost_model
        Prices a step.
    num_device_blocks, num_host_blocks, block_size
        KV pools the simulated engine manages.
    padded_attention
        Price attention as the CPU executor runs it (padded per group, see
        :func:`padded_attention_work`) rather than as a paged GPU kernel does.
    noise
        Relative standard deviation of a multiplicative log-normal error on every step time
        (0: deterministic), so a scheduler's own predictions can be wrong.
    seed
        Seed of that noise.
    """

    def __init__(
        self,
        cost_model: CostModel,
        *,
        num_device_blocks: int,
        num_host_blocks: int,
        block_size: int,
        noise: float = 0.0,
        seed: int = 0,
        padded_attention: bool = False,
    ) -> None:
        if noise < 0:
            raise ConfigError(f"noise must be >= 0; got {noise}")
        self.cost_model = cost_model
        self.num_device_blocks = num_device_blocks
        self.num_host_blocks = num_host_blocks
        self.block_size = block_size
        self.noise = noise
        self.padded_attention = padded_attention
        self._rng = random.Random(seed)
        self.total_busy_s = 0.0

    @classmethod
    def for_hardware(
        cls,
        model: ModelShape,
        gpu: str,
        *,
        tp: int = 1,
        block_size: int = 16,
        host_kv_gib: float = 4.0,
        params: CostParams | None = None,
        num_device_blocks: int | None = None,
        gpu_memory_utilization: float = 0.9,
        noise: float = 0.0,
        seed: int = 0,
    ) -> SimExecutor:
        """A simulator of ``model`` on ``tp`` catalogue GPUs named ``gpu``.

        ``num_device_blocks`` overrides the pool size derived from memory (to create memory
        pressure on purpose); ``host_kv_gib`` is the swap space, in GiB per GPU.
        """
        device = get_catalogue().gpu(gpu)
        if num_device_blocks is None:
            num_device_blocks = device_kv_blocks(
                model, device, block_size=block_size, tp=tp,
                gpu_memory_utilization=gpu_memory_utilization,
            )
        per_block = model.kv_bytes_per_token / tp * block_size
        num_host_blocks = int(host_kv_gib * GIB // per_block)
        cost = CostModel(model, params or CostParams.from_hardware(device), tp=tp)
        return cls(
            cost,
            num_device_blocks=num_device_blocks,
            num_host_blocks=num_host_blocks,
            block_size=block_size,
            noise=noise,
            seed=seed,
        )

    def execute(self, plan: StepPlan) -> StepResult:
        swapped = (len(plan.swap_out) + len(plan.swap_in)) * self.block_size
        if self.padded_attention:
            sum_ctx, pairs = padded_attention_work(plan)
        else:
            sum_ctx, pairs = plan.sum_context_tokens, plan.sum_attention_pairs
        t = self.cost_model.step_time(
            plan.num_batched_tokens, len(plan.requests), sum_ctx, pairs, swapped,
            plan.num_prefill_seqs,
        )
        if self.noise and t:
            t *= self._rng.lognormvariate(0.0, self.noise)
        self.total_busy_s += t
        return StepResult(plan.step_id, [SIM_TOKEN_ID] * len(plan.requests), t)
