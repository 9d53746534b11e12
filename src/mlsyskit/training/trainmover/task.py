"""What a user plugs in: a :class:`TrainTask` (model per pipeline stage, optimizer, data, loss).

TrainMover never looks inside a task. Workers load it by a ``"module:function"`` string so that
every process (worker, standby, restarted worker) builds the same thing; the function receives
the :class:`~mlsyskit.training.trainmover.config.JobConfig`.

The data order is a pure function of ``(seed, iteration, replica)``: a replaced rank, a restarted
job and an uninterrupted job all see the same batches, which is what makes step-by-step loss
comparison possible.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from mlsyskit.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from mlsyskit.training.trainmover.config import JobConfig

IN_DIM = 32
OUT_DIM = 8


class TrainTask(Protocol):
    """The user's training job, split by pipeline stage.

    ``build_stage(s, n)`` must be deterministic (seeded) so that every replica of a stage starts
    from the same parameters. ``batch`` must depend only on its arguments.
    """

    def build_stage(self, stage: int, num_stages: int) -> nn.Module: ...

    def make_optimizer(self, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer: ...

    def batch(
        self, iteration: int, dp_rank: int, dp_size: int
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def activation_shape(self) -> tuple[int, ...]: ...

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor: ...


class MLPTask:
    """A small MLP regressing a fixed random teacher; stage 0 gets the first half of the layers.

    The full model is built under one seed and then cut, so the 2-stage pipeline starts from the
    same weights as the data-parallel model.
    """

    def __init__(self, config: JobConfig) -> None:
        self.config = config

    def _full_layers(self) -> list[nn.Module]:
        import torch
        from torch import nn

        torch.manual_seed(self.config.seed)
        dims = [IN_DIM] + [self.config.hidden] * (self.config.layers - 1) + [OUT_DIM]
        layers: list[nn.Module] = []
        for i in range(len(dims) - 1):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2:
                layers.append(nn.Tanh())
        return layers

    def build_stage(self, stage: int, num_stages: int) -> nn.Module:
        from torch import nn

        layers = self._full_layers()
        if num_stages == 1:
            return nn.Sequential(*layers)
        cut = 2 * (self.config.layers // 2)  # after a Tanh, so the activation is hidden-sized
        return nn.Sequential(*(layers[:cut] if stage == 0 else layers[cut:]))

    def make_optimizer(self, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        import torch

        return torch.optim.Adam(params, lr=self.config.lr)

    def batch(
        self, iteration: int, dp_rank: int, dp_size: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        gen = torch.Generator().manual_seed(
            self.config.seed * 1_000_003 + iteration * 1009 + dp_rank
        )
        x = torch.randn(self.config.batch, IN_DIM, generator=gen)
        teacher = torch.randn(IN_DIM, OUT_DIM, generator=torch.Generator().manual_seed(7))
        return x, torch.tanh(x @ teacher)

    def activation_shape(self) -> tuple[int, ...]:
        return (self.config.batch, self.config.hidden)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        import torch

        return torch.nn.functional.mse_loss(output, target)


def mlp_task(config: JobConfig) -> TrainTask:
    """The default task (see :class:`MLPTask`)."""
    return MLPTask(config)


def load_task(spec: str, config: JobConfig) -> TrainTask:
    """Import ``"module:function"`` and call it with the job config.

    Raises
    ------
    ConfigError
        The spec is malformed, the module or the function does not exist.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"task spec {spec!r} must look like 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"task spec {spec!r}: cannot import {module_name!r}: {exc}") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"task spec {spec!r}: {module_name} has no callable {attr!r}")
    fn: Callable[[JobConfig], TrainTask] = factory
    return fn(config)
