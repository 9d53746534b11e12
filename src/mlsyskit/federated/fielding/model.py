"""The tiny model every client trains: a one-hidden-layer MLP in PyTorch, one thread.

Parameters travel as a list of NumPy arrays (``[W1, b1, W2, b2]``) so that averaging, mixing
and Flower's ``ArrayRecord`` need no torch; each local step builds tensors from them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mlsyskit.federated.fielding.params import Params


@dataclass(frozen=True)
class ModelSpec:
    """Shape of the MLP and the local training recipe."""

    input_dim: int
    num_classes: int
    hidden: int = 64
    lr: float = 0.05
    batch_size: int = 32
    local_epochs: int = 1

    @property
    def num_params(self) -> int:
        return self.input_dim * self.hidden + self.hidden + self.hidden * self.num_classes + (
            self.num_classes
        )

    @property
    def bytes(self) -> int:
        """float32 size of one model on the wire."""
        return 4 * self.num_params

    @property
    def forward_flops_per_sample(self) -> float:
        return 2.0 * (self.input_dim * self.hidden + self.hidden * self.num_classes)


def init_params(spec: ModelSpec, seed: int) -> Params:
    """He-style initialisation from a seed (same seed, same model)."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, np.sqrt(2.0 / spec.input_dim), (spec.input_dim, spec.hidden))
    w2 = rng.normal(0, np.sqrt(1.0 / spec.hidden), (spec.hidden, spec.num_classes))
    return [
        w1.astype(np.float32), np.zeros(spec.hidden, np.float32),
        w2.astype(np.float32), np.zeros(spec.num_classes, np.float32),
    ]


def _forward(p: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return torch.relu(x @ p[0] + p[1]) @ p[2] + p[3]


def train_local(
    params: Params, x: np.ndarray, y: np.ndarray, spec: ModelSpec, seed: int
) -> Params:
    """Plain minibatch SGD on the mean cross-entropy for ``spec.local_epochs`` epochs.

    The two-layer gradient is written out (no autograd): for a model this small, autograd's
    per-op bookkeeping costs more than the arithmetic, and the sweep trains ~10^5 local
    updates. ``test_model.py`` checks it against autograd.
    """
    torch.set_num_threads(1)
    w1, b1, w2, b2 = (torch.tensor(a) for a in params)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for _ in range(spec.local_epochs):
            order = torch.from_numpy(rng.permutation(len(x)))
            for start in range(0, len(x), spec.batch_size):
                idx = order[start : start + spec.batch_size]
                xb, yb = xt[idx], yt[idx]
                pre = torch.addmm(b1, xb, w1)
                hidden = torch.relu(pre)
                grad_logits = torch.softmax(torch.addmm(b2, hidden, w2), dim=1)
                grad_logits[torch.arange(len(yb)), yb] -= 1.0
                grad_logits /= len(yb)
                grad_hidden = (grad_logits @ w2.T) * (pre > 0)
                w2.sub_(hidden.T @ grad_logits, alpha=spec.lr)
                b2.sub_(grad_logits.sum(0), alpha=spec.lr)
                w1.sub_(xb.T @ grad_hidden, alpha=spec.lr)
                b1.sub_(grad_hidden.sum(0), alpha=spec.lr)
    return [t.numpy() for t in (w1, b1, w2, b2)]


def train_local_autograd(
    params: Params, x: np.ndarray, y: np.ndarray, spec: ModelSpec, seed: int
) -> Params:
    """The same SGD through autograd: the reference :func:`train_local` is tested against."""
    p = [torch.tensor(a, requires_grad=True) for a in params]
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    rng = np.random.default_rng(seed)
    for _ in range(spec.local_epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), spec.batch_size):
            idx = torch.from_numpy(order[start : start + spec.batch_size])
            loss = torch.nn.functional.cross_entropy(_forward(p, xt[idx]), yt[idx])
            grads = torch.autograd.grad(loss, p)
            with torch.no_grad():
                for t, g in zip(p, grads, strict=True):
                    t -= spec.lr * g
    return [t.detach().numpy().copy() for t in p]


def evaluate(params: Params, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy and the per-sample correctness (bool array)."""
    if len(x) == 0:
        return 0.0, np.zeros(0, dtype=bool)
    with torch.no_grad():
        p = [torch.from_numpy(a) for a in params]
        logits = _forward(p, torch.from_numpy(x))
        yt = torch.from_numpy(y.astype(np.int64))
        loss = float(torch.nn.functional.cross_entropy(logits, yt))
        correct = (logits.argmax(1) == yt).numpy()
    return loss, correct
