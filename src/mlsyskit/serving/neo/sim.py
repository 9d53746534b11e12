"""The simulated NEO executor: charges each plan the *true* costs of a GPU + host pair.

It prices NEO plans (pipelined or sequential) and plain device-only plans with the same
:func:`~mlsyskit.serving.neo.plan.step_time`, so NEO and its baselines meet one cost model. The
scheduler predicts with profiled tables; this executor charges :class:`RooflineLayerCosts`
(optionally with log-normal noise), so mispredictions cost what they would.
"""

from __future__ import annotations

import random

from mlsyskit.errors import ConfigError
from mlsyskit.serving.executor.base import Executor
from mlsyskit.serving.executor.sim import SIM_TOKEN_ID
from mlsyskit.serving.neo.cost import LayerCosts
from mlsyskit.serving.neo.plan import NeoStepPlan, step_time
from mlsyskit.serving.plan import StepPlan, StepResult


class NeoSimExecutor(Executor):
    """Returns the cost of a plan as its duration; runs nothing.

    Parameters
    ----------
    costs
        True per-layer costs (usually :class:`~mlsyskit.serving.neo.cost.RooflineLayerCosts`).
    num_device_blocks, num_host_blocks, block_size
        KV pools of the simulated engine.
    noise, seed
        Relative standard deviation of a log-normal factor on every step, and its seed.
    """

    def __init__(
        self,
        costs: LayerCosts,
        *,
        num_device_blocks: int,
        num_host_blocks: int,
        block_size: int,
        noise: float = 0.0,
        seed: int = 0,
    ) -> None:
        if noise < 0:
            raise ConfigError(f"noise must be >= 0; got {noise}")
        self.costs = costs
        self.num_device_blocks = num_device_blocks
        self.num_host_blocks = num_host_blocks
        self.block_size = block_size
        self.noise = noise
        self._rng = random.Random(seed)
        self.total_busy_s = 0.0
        #: (predicted, charged) seconds of every NEO step, for the prediction-error report
        self.predictions: list[tuple[float, float]] = []

    def execute(self, plan: StepPlan) -> StepResult:
        t = step_time(plan, self.costs, self.block_size)
        if self.noise and t:
            t *= self._rng.lognormvariate(0.0, self.noise)
        self.total_busy_s += t
        if isinstance(plan, NeoStepPlan) and plan.requests:
            self.predictions.append((plan.predicted_s, t))
        return StepResult(plan.step_id, [SIM_TOKEN_ID] * len(plan.requests), t)
