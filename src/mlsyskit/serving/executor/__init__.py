"""Executors: the real PyTorch one and the simulated one, behind :class:`Executor`.

``TorchExecutor`` is imported from :mod:`mlsyskit.serving.executor.torch_executor` on use, so
the simulator does not need torch.
"""

from mlsyskit.serving.executor.base import Executor
from mlsyskit.serving.executor.cost_model import CostModel, CostParams, ModelShape
from mlsyskit.serving.executor.sim import SimExecutor, device_kv_blocks

__all__ = ["CostModel", "CostParams", "Executor", "ModelShape", "SimExecutor", "device_kv_blocks"]
