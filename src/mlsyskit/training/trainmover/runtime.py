"""One rank's training state and its step, written once against :class:`Comm`.

The same :func:`train_step` runs a real iteration, the recording iteration at job start and a
standby's shadow iteration; only the ``Comm`` differs. Gradients travel in one flat buffer (as DDP
buckets do); that buffer and the model/optimizer are all the memory a rank holds, and replacement
adds nothing to it on the stayers: state moves tensor by tensor, in place.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlsyskit.training.trainmover.config import JobConfig
from mlsyskit.training.trainmover.task import TrainTask

if TYPE_CHECKING:
    import torch
    from torch import nn

    from mlsyskit.training.trainmover.comm import Comm

NUM_CTRL = 4  # [ready_seq, -ready_seq, save_seq, -save_seq], all-reduced (MAX) at each boundary


@dataclass
class Runtime:
    """A rank's model, optimizer and buffers for one pipeline stage."""

    config: JobConfig
    task: TrainTask
    stage: int
    model: nn.Module
    optimizer: torch.optim.Optimizer
    flat: torch.Tensor
    act_buf: torch.Tensor | None

    @classmethod
    def build(cls, config: JobConfig, task: TrainTask, stage: int) -> Runtime:
        """Build a stage's model (seeded), its optimizer and its communication buffers."""
        import torch

        model = task.build_stage(stage, config.pp)
        optimizer = task.make_optimizer(model.parameters())
        num_params = sum(p.numel() for p in model.parameters())
        flat = torch.zeros(num_params + 1)  # + 1 slot carries the loss through the all-reduce
        act_buf = torch.zeros(task.activation_shape()) if config.pp > 1 else None
        return cls(config, task, stage, model, optimizer, flat, act_buf)

    def peer_rank(self, dp_rank: int) -> int:
        """The rank on the other pipeline stage that exchanges activations with us."""
        dp = self.config.dp
        return dp + dp_rank if self.stage == 0 else dp_rank

    def state_tensors(self) -> list[torch.Tensor]:
        """Every tensor of the training state, in a fixed order (params, then optimizer state).

        Creates the optimizer's lazy state first if needed, so a sender and a receiver always
        list the same tensors.
        """
        ensure_optimizer_state(self.optimizer)
        tensors: list[torch.Tensor] = [p.data for p in self.model.parameters()]
        for p in self.model.parameters():
            state = self.optimizer.state[p]
            tensors.extend(state[k] for k in sorted(state) if hasattr(state[k], "numel"))
        return tensors


def ensure_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Materialise an optimizer's lazily created state with a zero-gradient step.

    Adam with a zero gradient moves no parameter; its moments stay zero. The values are
    overwritten by the state transfer anyway; what matters is that the tensors exist.
    """
    import torch

    params = [p for g in optimizer.param_groups for p in g["params"]]
    if all(len(optimizer.state[p]) > 0 for p in params):
        return
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for p in params:
        p.grad = None


def train_step(rt: Runtime, comm: Comm, iteration: int, dp_rank: int) -> tuple[float, float]:
    """One iteration: forward, backward (with the pipeline exchange), gradient all-reduce, step.

    Returns the stage's replica-mean loss (NaN on stage 0 of a pipeline, which has no loss) and
    the seconds spent before the gradient all-reduce (compute, and pipeline waits), which is
    what tells a straggler apart: its peers' time goes into waiting inside the all-reduce.
    """
    import time

    import torch

    started = time.perf_counter()

    config = rt.config
    x, y = rt.task.batch(iteration, dp_rank, config.dp)
    rt.optimizer.zero_grad(set_to_none=False)
    loss_value = torch.tensor(float("nan"))
    if config.pp == 1:
        loss = rt.task.loss(rt.model(x), y)
        loss.backward()
        loss_value = loss.detach()
    elif rt.stage == 0:
        assert rt.act_buf is not None
        act = rt.model(x)
        comm.send(act.detach().contiguous(), rt.peer_rank(dp_rank))
        comm.recv(rt.act_buf, rt.peer_rank(dp_rank))
        act.backward(rt.act_buf)
    else:
        assert rt.act_buf is not None
        comm.recv(rt.act_buf, rt.peer_rank(dp_rank))
        inp = rt.act_buf.detach().requires_grad_(True)
        loss = rt.task.loss(rt.model(inp), y)
        loss.backward()
        assert inp.grad is not None
        comm.send(inp.grad.contiguous(), rt.peer_rank(dp_rank))
        loss_value = loss.detach()
    params = list(rt.model.parameters())
    offset = 0
    for p in params:
        n = p.numel()
        assert p.grad is not None
        rt.flat[offset : offset + n].copy_(p.grad.reshape(-1))
        offset += n
    rt.flat[offset] = 0.0 if torch.isnan(loss_value) else loss_value
    compute_s = time.perf_counter() - started
    comm.dp_all_reduce(rt.flat)
    rt.flat.div_(config.dp)
    offset = 0
    for p in params:
        n = p.numel()
        assert p.grad is not None
        p.grad.copy_(rt.flat[offset : offset + n].view_as(p))
        offset += n
    rt.optimizer.step()
    loss_out = float("nan") if torch.isnan(loss_value) else float(rt.flat[offset])
    return loss_out, compute_s


def save_checkpoint(rt: Runtime, iteration: int, path: Path) -> None:
    """Write a stage's model, optimizer and next iteration to ``path`` (atomic rename)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "iteration": iteration,
            "model": rt.model.state_dict(),
            "optimizer": rt.optimizer.state_dict(),
        },
        tmp,
    )
    os.replace(tmp, path)


def load_checkpoint(rt: Runtime, path: Path) -> int:
    """Load a checkpoint written by :func:`save_checkpoint`; returns the next iteration."""
    import torch

    payload = torch.load(path, weights_only=True)
    rt.model.load_state_dict(payload["model"])
    rt.optimizer.load_state_dict(payload["optimizer"])
    return int(payload["iteration"])


def rss_mb() -> float:
    """Resident set size of this process now, in MiB (from /proc, no extra dependency)."""
    with open("/proc/self/statm", encoding="ascii") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """High-water mark of this process's resident set, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
