"""The executor seam: turn a :class:`StepPlan` into a :class:`StepResult`.

Executors decide nothing about scheduling. The real one (:class:`TorchExecutor`) runs a PyTorch
model over paged KV tensors; the simulated one (:class:`SimExecutor`) prices the plan with a cost
model. NEO will be a third: a GPU/CPU sub-batch planner with host-side attention.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from mlsyskit.serving.plan import StepPlan, StepResult


class Executor(ABC):
    """Runs planned steps.

    Attributes
    ----------
    num_device_blocks, num_host_blocks, block_size
        The KV pools this executor holds (the engine sizes its block manager from them).
    eos_token_id
        End-of-sequence token of the model (``None``: a simulator never emits one).
    """

    num_device_blocks: int
    num_host_blocks: int
    block_size: int
    eos_token_id: int | None = None

    @abstractmethod
    def execute(self, plan: StepPlan) -> StepResult:
        """Do the plan's swaps (out, then in), then the forward pass, and sample."""

    def release(self, request_id: str) -> None:  # noqa: B027 - optional hook
        """Forget per-request state (a sampler, say) of a finished request."""
