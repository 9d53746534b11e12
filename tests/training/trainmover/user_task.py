"""A user's own task, as in the docs: imported by every worker as a ``module:function`` spec."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from mlsyskit.training.trainmover.config import JobConfig


class TinyRegression:
    def __init__(self, config: JobConfig) -> None:
        self.config = config

    def build_stage(self, stage: int, num_stages: int) -> nn.Module:
        torch.manual_seed(self.config.seed)
        return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))

    def make_optimizer(self, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=0.05, momentum=0.9)

    def batch(
        self, iteration: int, dp_rank: int, dp_size: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(iteration * 1009 + dp_rank)
        x = torch.randn(8, 4, generator=g)
        return x, x.sum(dim=1, keepdim=True)

    def activation_shape(self) -> tuple[int, ...]:
        return (8, 16)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(output, target)


def make_task(config: JobConfig) -> TinyRegression:
    return TinyRegression(config)
