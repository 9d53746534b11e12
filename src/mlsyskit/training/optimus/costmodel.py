"""Per-kernel cost model of Megatron-style transformer layers (TP + sequence parallelism).

Why per kernel: Optimus fills ~300 us TP bubbles, which cannot hold a whole encoder layer,
so the simulator and the scheduler both need each layer as its kernel sequence
(2 all-gathers + 2 reduce-scatters per layer forward, as the paper states).

Numbers: peak FLOP/s, link bandwidth and latency come from :mod:`mlsyskit.hardware`.
GEMM efficiency follows Calculon's size-dependent curve for H100/A100 (>=128 GFLOP: 0.95,
16: 0.9, 1: 0.6); link efficiencies follow Calculon (NVLink 0.6, network 0.9).  On top sit at
most three global constants (:class:`Calibration`), bounded to physically defensible ranges
and fitted on the Megatron-LM baseline rows only
(see :mod:`mlsyskit.training.optimus.calibration`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from enum import Enum

from mlsyskit.hardware import GPU, Link
from mlsyskit.training.optimus.config import JobConfig
from mlsyskit.training.optimus.models import TransformerSpec
from mlsyskit.training.optimus.placement import Placement

# Calculon systems/h100_80g_nvl8.json matrix-efficiency curve: (GFLOP, efficiency).
_GEMM_CURVE: tuple[tuple[float, float], ...] = (
    (0.01, 0.15), (0.1, 0.35), (1.0, 0.6), (16.0, 0.9), (128.0, 0.95),
)
NVLINK_EFFICIENCY = 0.6  # Calculon h100/a100 system files
NETWORK_EFFICIENCY = 0.9  # Calculon h100/a100 system files
MEMORY_BOUND_EFFICIENCY = 0.7  # share of HBM bandwidth a layer-norm / GeLU kernel reaches
BYTES_BF16 = 2
BYTES_FP32 = 4


class Stream(Enum):
    """Which GPU resource a kernel occupies."""

    COMPUTE = "compute"
    COMM = "comm"


class Direction(Enum):
    FWD = "fwd"
    BWD = "bwd"


@dataclass(frozen=True)
class Calibration:
    """The global constants fitted on the baseline rows (defaults: the shipped fit).

    Parameters
    ----------
    compute_scale
        Multiplier on the Calculon GEMM-efficiency curve (kernel launch gaps, clocks).
    p2p_scale
        Multiplier on pipeline point-to-point time (exposed P2P of Megatron's schedules).
    dp_scale
        Multiplier on the exposed DP all-gather / reduce-scatter of the first model chunk.
    """

    # Shipped defaults = the grid fit of calibration.fit on Table 5's Megatron-LM rows within
    # physical bounds (max rel. error 0.004; all-1.0 constants already give 0.036);
    # ``mlsyskit reproduce optimus`` re-fits and reports them.
    compute_scale: float = 0.95
    p2p_scale: float = 8.0
    dp_scale: float = 1.0


@dataclass(frozen=True)
class Kernel:
    """One kernel of a layer: name, stream and duration in seconds."""

    name: str
    stream: Stream
    duration_s: float


def gemm_efficiency(gflop: float, scale: float) -> float:
    """Calculon's size-dependent matrix efficiency (log-interpolated) times ``scale``."""
    pts = _GEMM_CURVE
    if gflop <= pts[0][0]:
        eff = pts[0][1]
    elif gflop >= pts[-1][0]:
        eff = pts[-1][1]
    else:
        eff = pts[-1][1]
        for (x0, y0), (x1, y1) in itertools.pairwise(pts):
            if x0 <= gflop <= x1:
                frac = (math.log(gflop) - math.log(x0)) / (math.log(x1) - math.log(x0))
                eff = y0 + frac * (y1 - y0)
                break
    return min(1.0, eff * scale)


@dataclass(frozen=True)
class CostModel:
    """Kernel durations for one job on one GPU type.

    Parameters
    ----------
    gpu, intra_link, inter_link
        Hardware from the catalogue.
    calibration
        Fitted global constants.
    placement
        Megatron's rank layout on nodes (:class:`Placement`).  A TP, DP or pipeline group
        inside one node runs over ``intra_link``; one that crosses a node boundary runs at
        the pace of its slowest link (``inter_link`` in practice).  ``None`` (a cost model
        built by hand, without a job) keeps the paper's layout: TP inside a node, PP and DP
        across nodes.
    """

    gpu: GPU
    intra_link: Link
    inter_link: Link
    calibration: Calibration = Calibration()
    placement: Placement | None = None

    @classmethod
    def for_job(cls, job: JobConfig, calibration: Calibration | None = None) -> CostModel:
        return cls(job.gpu, job.intra_link, job.inter_link, calibration or Calibration(),
                   Placement.for_job(job))

    # --- primitive costs -------------------------------------------------------------
    def matmul_s(self, flops: float) -> float:
        eff = gemm_efficiency(flops / 1e9, self.calibration.compute_scale)
        return flops / (self.gpu.fp16_flops_per_s * eff)

    def memory_s(self, num_bytes: float) -> float:
        return num_bytes / (self.gpu.mem_bw_bytes_per_s * MEMORY_BOUND_EFFICIENCY)

    def ring_s(self, num_bytes: float, group: int, link: Link, efficiency: float) -> float:
        """Ring all-gather / reduce-scatter of a ``num_bytes`` full tensor over ``group``."""
        return _ring_s(num_bytes, group, link.bandwidth_bytes_per_s * efficiency,
                       link.latency_us * 1e-6)

    def group_ring_s(self, num_bytes: float, group: int, crosses_nodes: bool) -> float:
        """Ring collective over ``group`` GPUs, inside one node or across nodes.

        A ring moves in lock step, so a group that spans nodes goes at its slowest hop:
        the smaller effective bandwidth and the larger latency of the two links.
        """
        bw, lat = self._link_rate(crosses_nodes)
        return _ring_s(num_bytes, group, bw, lat)

    def _link_rate(self, crosses_nodes: bool) -> tuple[float, float]:
        """(bytes/s, seconds of latency) of the slowest link a group uses."""
        intra = (self.intra_link.bandwidth_bytes_per_s * NVLINK_EFFICIENCY,
                 self.intra_link.latency_us * 1e-6)
        if not crosses_nodes:
            return intra
        inter = (self.inter_link.bandwidth_bytes_per_s * NETWORK_EFFICIENCY,
                 self.inter_link.latency_us * 1e-6)
        return min(intra[0], inter[0]), max(intra[1], inter[1])

    def tp_crosses_nodes(self, tp: int) -> bool:
        """Whether a TP group of ``tp`` GPUs spans nodes (never, without a placement)."""
        return self.placement is not None and self.placement.tp_crosses_nodes(tp)

    def p2p_s(self, num_bytes: float) -> float:
        """Pipeline send/recv of ``num_bytes`` (scaled by ``p2p_scale``).

        Every hop is costed like the slowest one: over the network when some pipeline hop
        leaves its node (always, without a placement), over NVLink when the whole pipeline
        replica sits in one node.
        """
        crosses = self.placement is None or self.placement.pp_crosses_nodes()
        bw, lat = self._link_rate(crosses)
        return (lat + num_bytes / bw) * self.calibration.p2p_scale

    def dp_collective_s(self, num_params: float, dp: int, bytes_per_param: int) -> float:
        """Exposed DP all-gather or reduce-scatter of ``num_params`` over ``dp`` ranks.

        The group runs over NVLink only when the placement puts all its ranks in one node
        (:meth:`Placement.dp_crosses_nodes`); without a placement it crosses nodes.
        """
        crosses = self.placement is None or self.placement.dp_crosses_nodes(dp)
        raw = self.group_ring_s(num_params * bytes_per_param, dp, crosses)
        return raw * self.calibration.dp_scale

    # --- layers -----------------------------------------------------------------------
    def layer_kernels(
        self, spec: TransformerSpec, seq_len: int, microbatch: int, tp: int,
        direction: Direction, recompute: bool = False,
    ) -> tuple[Kernel, ...]:
        """Kernel sequence of one layer (per TP rank); backward includes the recompute."""
        key = (self._hw_key(), self.tp_crosses_nodes(tp), spec, seq_len, microbatch, tp,
               direction, recompute)
        hit = _KERNEL_CACHE.get(key)
        if hit is None:
            hit = _layer_kernels(self, spec, seq_len, microbatch, tp, direction, recompute)
            _KERNEL_CACHE[key] = hit
        return hit

    def _hw_key(self) -> tuple[float, ...]:
        g, a, b, c = self.gpu, self.intra_link, self.inter_link, self.calibration
        return (
            g.fp16_tflops, g.mem_bw_gbs, a.bandwidth_gbs, a.latency_us, b.bandwidth_gbs,
            b.latency_us, c.compute_scale, c.p2p_scale, c.dp_scale,
        )

    def layer_time_s(
        self, spec: TransformerSpec, seq_len: int, microbatch: int, tp: int,
        direction: Direction, recompute: bool = False,
    ) -> float:
        return sum(
            k.duration_s
            for k in self.layer_kernels(spec, seq_len, microbatch, tp, direction, recompute)
        )

    def activation_bytes(self, spec: TransformerSpec, seq_len: int, microbatch: int) -> float:
        """Bytes of one microbatch's hidden states (bf16), the payload of a pipeline P2P."""
        return float(microbatch * seq_len * spec.hidden * BYTES_BF16)


_KERNEL_CACHE: dict[tuple[object, ...], tuple[Kernel, ...]] = {}


def _ring_s(num_bytes: float, group: int, bytes_per_s: float, latency_s: float) -> float:
    if group <= 1:
        return 0.0
    return (group - 1) / group * num_bytes / bytes_per_s + (group - 1) * latency_s


def _layer_kernels(
    cm: CostModel, spec: TransformerSpec, s: int, b: int, t: int, direction: Direction,
    recompute: bool,
) -> tuple[Kernel, ...]:
    h, f = spec.hidden, spec.ffn
    tokens = b * s
    attn_flops = 4.0 * b * s * s * h / t * (0.5 if spec.causal else 1.0)
    act_bytes = tokens * h * BYTES_BF16  # full (gathered) activation
    comm = cm.group_ring_s(act_bytes, t, cm.tp_crosses_nodes(t))
    ln = cm.memory_s(2 * act_bytes / t)
    gelu = cm.memory_s(2 * tokens * f * BYTES_BF16 / t)

    def mm(name: str, flops: float, mult: float = 1.0) -> Kernel:
        return Kernel(name, Stream.COMPUTE, cm.matmul_s(flops * mult))

    def cc(name: str) -> list[Kernel]:
        return [Kernel(name, Stream.COMM, comm)] if t > 1 else []

    qkv, proj = 2.0 * tokens * h * 3 * h / t, 2.0 * tokens * h * h / t
    fc1 = fc2 = 2.0 * tokens * h * f / t
    fwd = [
        Kernel("ln1", Stream.COMPUTE, ln), *cc("ag1"), mm("qkv", qkv), mm("attn", attn_flops),
        mm("proj", proj), *cc("rs1"), Kernel("ln2", Stream.COMPUTE, ln), *cc("ag2"),
        mm("fc1", fc1), Kernel("gelu", Stream.COMPUTE, gelu), mm("fc2", fc2), *cc("rs2"),
    ]
    if direction is Direction.FWD:
        return tuple(fwd)
    bwd = [
        *cc("ag_rs2"), mm("fc2_b", fc2, 2.0), Kernel("gelu_b", Stream.COMPUTE, gelu),
        mm("fc1_b", fc1, 2.0), *cc("rs_ag2"), Kernel("ln2_b", Stream.COMPUTE, ln),
        *cc("ag_rs1"), mm("proj_b", proj, 2.0), mm("attn_b", attn_flops, 2.5),
        mm("qkv_b", qkv, 2.0), *cc("rs_ag1"), Kernel("ln1_b", Stream.COMPUTE, ln),
    ]
    if recompute:
        return tuple(Kernel(k.name + "_rc", k.stream, k.duration_s) for k in fwd) + tuple(bwd)
    return tuple(bwd)
