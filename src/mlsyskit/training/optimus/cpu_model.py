"""Tiny ViT + GPT layers split into kernel "islands", and CPU-profiled kernel times.

Each kernel of the cost model's layer sequence (ln1, ag1, qkv, attn, proj, rs1, ...) is a
separate autograd island: its inputs are detached leaves, so forward and backward can be
issued kernel by kernel in whatever order a schedule says, and gradients are passed on by
hand.  TP collectives do not exist on one CPU rank; they are *emulated* (a timed wait during
which the core is free), which is what makes the bubbles real on this machine.

Imports torch: only the CPU-run commands load this module.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from mlsyskit.training.optimus.costmodel import CostModel, Direction, Kernel, Stream
from mlsyskit.training.optimus.models import TransformerSpec

FWD_ISLANDS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    # name, inputs, output ("ag"/"rs" names are emulated collectives, no island)
    ("ln1", ("x",), "y"),
    ("ag1", (), ""),
    ("qkv", ("y",), "qkv"),
    ("attn", ("qkv",), "o"),
    ("proj", ("o", "x"), "z"),
    ("rs1", (), ""),
    ("ln2", ("z",), "y2"),
    ("ag2", (), ""),
    ("fc1", ("y2",), "u"),
    ("gelu", ("u",), "g"),
    ("fc2", ("g", "z"), "out"),
    ("rs2", (), ""),
)
BWD_ORDER = ("rs2", "fc2", "gelu", "fc1", "ag2", "ln2", "rs1", "proj", "attn", "qkv", "ag1",
             "ln1")
COMM = {"ag1", "rs1", "ag2", "rs2"}


class IslandLayer(nn.Module):
    """A pre-norm transformer layer whose kernels can run one at a time."""

    def __init__(self, spec: TransformerSpec) -> None:
        super().__init__()
        h = spec.hidden
        self.heads = spec.num_heads
        self.causal = spec.causal
        self.ln1, self.ln2 = nn.LayerNorm(h), nn.LayerNorm(h)
        self.wqkv, self.wo = nn.Linear(h, 3 * h), nn.Linear(h, h)
        self.w1, self.w2 = nn.Linear(h, spec.ffn), nn.Linear(spec.ffn, h)

    def fn(self, name: str) -> Callable[..., torch.Tensor]:
        def attn(qkv: torch.Tensor) -> torch.Tensor:
            b, s, h3 = qkv.shape
            q, k, v = qkv.view(b, s, 3, self.heads, h3 // 3 // self.heads).unbind(2)
            o = nn.functional.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=self.causal
            )
            return o.transpose(1, 2).reshape(b, s, h3 // 3)

        table: dict[str, Callable[..., torch.Tensor]] = {
            "ln1": self.ln1, "qkv": self.wqkv, "attn": attn,
            "proj": lambda o, x: x + self.wo(o), "ln2": self.ln2, "fc1": self.w1,
            "gelu": nn.functional.gelu, "fc2": lambda g, z: z + self.w2(g),
        }
        return table[name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        vals = {"x": x}
        for name, ins, out in FWD_ISLANDS:
            if name not in COMM:
                vals[out] = self.fn(name)(*(vals[i] for i in ins))
        return vals["out"]


@dataclass
class LayerRun:
    """Saved leaves/outputs of one layer for one microbatch (between fwd and bwd)."""

    vals: dict[str, torch.Tensor] = field(default_factory=dict)
    leaves: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    outs: dict[str, torch.Tensor] = field(default_factory=dict)
    grads: dict[str, torch.Tensor] = field(default_factory=dict)


_FWD = {name: (ins, out) for name, ins, out in FWD_ISLANDS}


def run_fwd_kernel(layer: IslandLayer, run: LayerRun, name: str) -> None:
    """Forward island ``name`` (a no-op for emulated collectives)."""
    if name in COMM:
        return
    ins, out = _FWD[name]
    leaves = [run.vals[i].detach().requires_grad_(True) for i in ins]
    with torch.enable_grad():
        result = layer.fn(name)(*leaves)
    run.leaves[name], run.outs[name] = leaves, result
    run.vals[out] = result.detach()


def run_bwd_kernel(run: LayerRun, name: str) -> None:
    """Backward of island ``name``: push the output's gradient into its inputs' gradients."""
    if name in COMM:
        return
    ins, out = _FWD[name]
    torch.autograd.backward(run.outs[name], run.grads[out])
    for i, leaf in zip(ins, run.leaves[name], strict=True):
        g = leaf.grad
        assert g is not None
        run.grads[i] = run.grads[i] + g if i in run.grads else g
    del run.outs[name], run.leaves[name]


def kernel_names(direction: Direction) -> tuple[str, ...]:
    return tuple(n for n, _, _ in FWD_ISLANDS) if direction is Direction.FWD else BWD_ORDER


@dataclass(frozen=True)
class EmulatedComm:
    """Durations of the emulated communication (seconds)."""

    tp_s: float = 0.8e-3
    dp_ag_s: float = 8e-3
    dp_rs_s: float = 12e-3
    p2p_s: float = 0.3e-3


def profile_layer(spec: TransformerSpec, batch: int, seq: int, reps: int = 15,
                  seed: int = 0) -> dict[tuple[Direction, str], float]:
    """Median CPU time of every island, forward and backward (one torch thread)."""
    torch.manual_seed(seed)
    layer = IslandLayer(spec)
    out: dict[tuple[Direction, str], list[float]] = {}
    for _ in range(reps + 2):
        run = LayerRun(vals={"x": torch.randn(batch, seq, spec.hidden)})
        for name in kernel_names(Direction.FWD):
            t = time.perf_counter()
            run_fwd_kernel(layer, run, name)
            out.setdefault((Direction.FWD, name), []).append(time.perf_counter() - t)
        run.grads["out"] = torch.randn_like(run.vals["out"])
        for name in kernel_names(Direction.BWD):
            t = time.perf_counter()
            run_bwd_kernel(run, name)
            out.setdefault((Direction.BWD, name), []).append(time.perf_counter() - t)
    return {k: statistics.median(v[2:]) for k, v in out.items()}


class ProfiledCostModel(CostModel):
    """A cost model whose kernel times are the CPU profile, with emulated collectives.

    LLM layers (causal specs) get the emulated TP collectives; encoder layers have none
    (TP_enc = 1).  DP collectives take the emulated durations; P2P takes ``comm.p2p_s``,
    which the CPU run sets to the gloo lag measured in situ (the run does not emulate it).
    """

    profiles: dict[str, dict[tuple[Direction, str], float]]
    comm: EmulatedComm

    def layer_kernels(
        self, spec: TransformerSpec, seq_len: int, microbatch: int, tp: int,
        direction: Direction, recompute: bool = False,
    ) -> tuple[Kernel, ...]:
        prof = self.profiles[spec.name]
        out = []
        for name in kernel_names(direction):
            if name in COMM:
                if spec.causal:
                    out.append(Kernel(name, Stream.COMM, self.comm.tp_s))
            else:  # "spec/island": the in-situ prediction looks the island up by name
                out.append(Kernel(f"{spec.name}/{name}", Stream.COMPUTE,
                                  prof[(direction, name)]))
        return tuple(out)

    def p2p_s(self, num_bytes: float) -> float:
        return self.comm.p2p_s

    def dp_collective_s(self, num_params: float, dp: int, bytes_per_param: int) -> float:
        return self.comm.dp_ag_s if bytes_per_param == 2 else self.comm.dp_rs_s


def profiled_cost_model(base: CostModel, profiles: dict[str, dict[tuple[Direction, str], float]],
                        comm: EmulatedComm) -> ProfiledCostModel:
    cm = ProfiledCostModel(base.gpu, base.intra_link, base.inter_link, base.calibration)
    object.__setattr__(cm, "profiles", profiles)
    object.__setattr__(cm, "comm", comm)
    return cm
