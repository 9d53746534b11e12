"""Labelled multi-machine metric traces of a synchronous training job, with injected faults.

Each machine reports nine metrics at 1 Hz. Healthy machines share the job's iteration rhythm
(3D-parallel load is balanced), so they look alike up to AR(1) noise, a small per-machine offset
and a per-pipeline-stage offset (stages are the peer groups). On top come:

* **job-wide phases** that are not faults: checkpoint saves and evaluation passes hit every machine
  at once (with a second or two of skew);
* **benign spikes**: one machine, one metric, 3-40 s, far shorter than the continuity window;
* **faults** on one machine with the shapes the Minder paper describes (section 1.1/1.7 of the
  notes): the victim's own signature plus the job-wide slowdown it causes; GPU execution errors
  and PCIe downgrades sometimes spread to peers (the paper's "group effect", which costs recall);
* **collection noise**: per-machine clock skew, dropped samples, and a hung machine that stops
  reporting (its series must be filled from the nearest sample);
* optionally **spiky telemetry** (``spike_rate``, default off): every sample of every metric is,
  with that probability, a one-second burst of 1.5-4x its value (counter bursts, a sample read
  across two intervals), on healthy and faulty machines alike. Real per-second counters are
  spikier than AR(1) noise; this is the noise the paper's per-metric denoising is for. Spikes
  are drawn last, so traces with ``spike_rate = 0`` are unchanged.

Every magnitude is drawn from a range, so some faults are subtle. All randomness comes from one
``numpy.random.Generator`` seeded by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from mlsyskit.errors import ConfigError
from mlsyskit.training.minder.frame import MetricFrame, align

METRICS: tuple[str, ...] = (
    "pfc_tx_rate",
    "cpu_usage",
    "gpu_duty_cycle",
    "gpu_power",
    "tensor_activity",
    "nvlink_bw",
    "nic_throughput",
    "memory_used",
    "step_time",
)
"""Metric names: PFC Tx packets/s, CPU %, GPU duty %, GPU W, tensor activity 0-1, NVLink GB/s,
NIC Gbit/s, host memory GiB, step time s."""

# base level, swing with the iteration rhythm (fraction of base), AR(1) noise (fraction of base)
_BASE = {
    "pfc_tx_rate": (300.0, 0.6, 0.10),
    "cpu_usage": (30.0, 0.10, 0.04),
    "gpu_duty_cycle": (80.0, 0.15, 0.02),
    "gpu_power": (320.0, 0.15, 0.03),
    "tensor_activity": (0.5, 0.25, 0.04),
    "nvlink_bw": (120.0, 0.30, 0.04),
    "nic_throughput": (6.5, 0.20, 0.03),
    "memory_used": (420.0, 0.0, 0.003),
    "step_time": (2.0, 0.0, 0.01),
}


class FaultType(StrEnum):
    """The fault kinds of the paper's Table 1 that a generator can shape."""

    ECC_ERROR = "ecc_error"
    GPU_EXECUTION_ERROR = "gpu_execution_error"
    PCIE_DOWNGRADE = "pcie_downgrade"
    NIC_FLAP = "nic_flap"
    NVLINK_ERROR = "nvlink_error"
    CPU_CONTENTION = "cpu_contention"
    MACHINE_HANG = "machine_hang"
    STRAGGLER = "straggler"


# Shares loosely after the paper (ECC most common, then execution errors, PCIe, ...).
FAULT_MIX: dict[FaultType, float] = {
    FaultType.ECC_ERROR: 0.24,
    FaultType.GPU_EXECUTION_ERROR: 0.12,
    FaultType.PCIE_DOWNGRADE: 0.12,
    FaultType.NIC_FLAP: 0.12,
    FaultType.NVLINK_ERROR: 0.10,
    FaultType.CPU_CONTENTION: 0.10,
    FaultType.MACHINE_HANG: 0.10,
    FaultType.STRAGGLER: 0.10,
}


@dataclass(frozen=True)
class FaultLabel:
    """Ground truth: ``machine`` misbehaves from ``start_s`` to ``end_s`` (trace seconds)."""

    machine: str
    fault_type: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class TraceConfig:
    """Shape of one generated trace.

    Parameters
    ----------
    num_machines
        Machines in the job, 4 to 1,024.
    duration_s
        Trace length in seconds (default 15 minutes, one detection pass).
    fault
        The fault to inject, or ``None`` for a fault-free trace.
    num_stages
        Pipeline stages (peer groups); ``None`` picks 1 for small jobs, else 2 or 4.
    metrics
        Which of :data:`METRICS` to emit.
    spike_rate
        Probability that a sample is a one-second burst (see the module docstring), 0 to 0.5.
    """

    num_machines: int = 16
    duration_s: int = 900
    fault: FaultType | None = None
    num_stages: int | None = None
    metrics: tuple[str, ...] = METRICS
    spike_rate: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.spike_rate <= 0.5:
            raise ConfigError(f"spike_rate must be in [0, 0.5]; got {self.spike_rate}")
        if not 2 <= self.num_machines <= 4096:
            raise ConfigError(f"num_machines must be in [2, 4096]; got {self.num_machines}")
        if self.duration_s < 120:
            raise ConfigError(f"duration_s must be >= 120; got {self.duration_s}")
        unknown = sorted(set(self.metrics) - set(METRICS))
        if unknown:
            raise ConfigError(f"unknown metrics {unknown}; known: {list(METRICS)}")


@dataclass
class Trace:
    """One generated job: raw values, which samples were reported, clock skew, labels."""

    frame: MetricFrame
    reported: np.ndarray  # bool (num_machines, num_steps): False = sample never sent
    skew_s: np.ndarray  # per-machine clock offset, seconds
    faults: list[FaultLabel] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        """The long table a collector would have stored: skewed timestamps, gaps included."""
        long = self.frame.to_long()
        num_metrics = len(self.frame.metrics)
        mask = np.tile(self.reported.reshape(-1), num_metrics)
        skew = np.tile(np.repeat(self.skew_s, self.frame.num_steps), num_metrics)
        long["timestamp"] = long["timestamp"].to_numpy() + skew
        return long[mask].reset_index(drop=True)

    def observed(self) -> MetricFrame:
        """What Minder sees: :meth:`table` aligned back onto the 1 s grid."""
        return align(
            self.table(),
            step_s=self.frame.step_s,
            metrics=list(self.frame.metrics),
            start_s=self.frame.t0_s,
            end_s=self.frame.t0_s + self.frame.step_s * (self.frame.num_steps - 1),
        )

    def faults_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [(f.machine, f.fault_type, f.start_s, f.end_s) for f in self.faults],
            columns=["machine", "fault_type", "start", "end"],
        )


def generate_trace(config: TraceConfig, rng: np.random.Generator, name: str = "job") -> Trace:
    """Generate one labelled trace (see the module docstring for what goes in)."""
    n, num_steps = config.num_machines, config.duration_s
    t = np.arange(num_steps, dtype=np.float64)
    stages = config.num_stages or (1 if n < 8 else int(rng.choice([2, 4])) if n >= 16 else 2)
    stages = max(1, min(stages, n // 2))
    stage_of = np.arange(n) * stages // n
    period = rng.uniform(5.0, 9.0)
    rhythm = 0.5 + 0.5 * np.sin(2 * np.pi * (t[None, :] + rng.normal(0, 0.15, (n, 1))) / period)
    stage_level = rng.normal(0.0, 0.06, stages)  # stages differ (embedding/head stages)
    values: dict[str, np.ndarray] = {}
    for metric in METRICS:
        base, swing, noise = _BASE[metric]
        machine_off = rng.normal(0.0, noise * 0.3, (n, 1))
        ar = lfilter([1.0], [1.0, -0.6], rng.normal(0, noise * 0.8, (n, num_steps)), axis=1)
        level = 1.0 + stage_level[stage_of][:, None] + machine_off + ar
        values[metric] = base * level * (1.0 + swing * (rhythm - 0.5))
    values["step_time"] = np.repeat(values["step_time"][:1], n, axis=0) * rng.uniform(
        0.998, 1.002, (n, 1)
    )
    values["memory_used"] += np.linspace(0, rng.uniform(0, 8), num_steps)[None, :]
    reported = rng.random((n, num_steps)) > 0.005
    _job_phases(values, rng, n, num_steps)
    _benign_spikes(values, rng, n, num_steps)
    machines = tuple(f"{name}-m{i:04d}" for i in range(n))
    faults: list[FaultLabel] = []
    if config.fault is not None:
        victim = int(rng.integers(n))
        start = int(rng.integers(60, max(61, num_steps - 360)))
        end = min(num_steps - 1, start + int(rng.integers(300, 900)))
        if config.fault is FaultType.MACHINE_HANG:
            end = num_steps - 1
        _inject(config.fault, values, reported, rng, victim, start, end, stage_of)
        faults.append(FaultLabel(machines[victim], config.fault.value, float(start), float(end)))
    if config.spike_rate > 0:
        for metric in METRICS:
            burst = rng.random(values[metric].shape) < config.spike_rate
            values[metric][burst] *= rng.uniform(1.5, 4.0, int(burst.sum()))
    for metric in METRICS:
        np.maximum(values[metric], 0.0, out=values[metric])
    values["tensor_activity"] = np.minimum(values["tensor_activity"], 1.0)
    for pct in ("cpu_usage", "gpu_duty_cycle"):
        values[pct] = np.minimum(values[pct], 100.0)
    stack = np.stack([values[m] for m in config.metrics]).astype(np.float32)
    frame = MetricFrame(
        machines=machines,
        metrics=config.metrics,
        groups=tuple(f"stage{s}" for s in stage_of),
        t0_s=0.0,
        step_s=1.0,
        values=stack,
    )
    skew = rng.uniform(-0.4, 0.4, n)
    return Trace(frame=frame, reported=reported, skew_s=skew, faults=faults)


def _blend(arr: np.ndarray, rows: np.ndarray | slice | int, a: int, b: int, target: np.ndarray,
           ramp_s: int = 3) -> None:
    """Move ``arr[rows, a:b]`` to ``target`` with a short linear ramp at the start."""
    w = np.clip((np.arange(a, b) - a + 1) / max(ramp_s, 1), 0.0, 1.0)
    arr[rows, a:b] = (1 - w) * arr[rows, a:b] + w * target


def _job_phases(v: dict[str, np.ndarray], rng: np.random.Generator, n: int, num_steps: int) -> None:
    """Checkpoint saves and evaluation passes: every machine at once, a second or two of skew."""
    t = int(rng.integers(30, 400))
    while t < num_steps - 20:
        kind = "checkpoint" if rng.random() < 0.6 else "evaluation"
        length = int(rng.integers(15, 45) if kind == "checkpoint" else rng.integers(40, 120))
        for m in range(n):
            a = min(num_steps, t + int(rng.integers(0, 3)))
            b = min(num_steps, a + length)
            if kind == "checkpoint":
                scales = {"gpu_duty_cycle": 0.08, "gpu_power": 0.4, "tensor_activity": 0.03,
                          "nvlink_bw": 0.05, "nic_throughput": 1.4, "cpu_usage": 2.2,
                          "pfc_tx_rate": 0.2}
            else:
                scales = {"gpu_duty_cycle": 0.7, "gpu_power": 0.75, "tensor_activity": 0.5,
                          "nvlink_bw": 0.3, "nic_throughput": 0.15, "pfc_tx_rate": 0.1}
            for metric, scale in scales.items():
                v[metric][m, a:b] *= scale
            v["step_time"][m, a:b] += length * 0.5
        t += length + int(rng.integers(200, 500))


def _benign_spikes(v: dict[str, np.ndarray], rng: np.random.Generator, n: int,
                   num_steps: int) -> None:
    """Short one-machine jitter (GC pause, log flush, a burst of pause frames)."""
    num_spikes = int(rng.poisson(1.0 + n / 64))
    for _ in range(num_spikes):
        m = int(rng.integers(n))
        a = int(rng.integers(0, num_steps - 5))
        b = min(num_steps, a + int(rng.integers(3, 40)))
        metric = str(rng.choice(["cpu_usage", "pfc_tx_rate", "nic_throughput", "gpu_duty_cycle",
                                 "gpu_power"]))
        factor = rng.uniform(2.0, 8.0) if metric in ("pfc_tx_rate", "cpu_usage") else rng.uniform(
            0.3, 0.7)
        v[metric][m, a:b] *= factor


def _inject(kind: FaultType, v: dict[str, np.ndarray], reported: np.ndarray,
            rng: np.random.Generator, victim: int, a: int, b: int, stage_of: np.ndarray) -> None:
    """Shape one fault on ``victim`` over ``[a, b)`` plus its job-wide side effects."""
    n = reported.shape[0]
    peers = np.array([i for i in range(n) if i != victim])
    sev = rng.uniform(0.4, 1.0)  # severity: some faults are subtle
    b = b + 1

    def scale(metric: str, rows: np.ndarray | int, factor: float, ramp: int = 3) -> None:
        _blend(v[metric], rows, a, b, v[metric][rows, a:b] * factor, ramp)

    if kind in (FaultType.ECC_ERROR, FaultType.GPU_EXECUTION_ERROR):
        # the victim's GPU stops computing; peers spin in NCCL waiting for it
        scale("gpu_duty_cycle", victim, 0.05)
        scale("gpu_power", victim, 0.35)
        scale("tensor_activity", peers, 0.1)
        scale("tensor_activity", victim, 0.02)
        scale("gpu_duty_cycle", peers, 1.15)
        scale("nic_throughput", peers, 0.2)
        scale("nic_throughput", victim, 0.05)
        scale("nvlink_bw", victim, 0.1)
        scale("step_time", np.arange(n), 3.0, ramp=30)
        if kind is FaultType.GPU_EXECUTION_ERROR and rng.random() < 0.5:
            # the error spreads over the 3D-parallel group: peers fail the same way soon after
            spread = a + int(rng.integers(30, 180))
            if spread < b:
                for metric, factor in (("gpu_duty_cycle", 0.05 / 1.15), ("gpu_power", 0.35),
                                       ("nic_throughput", 0.25), ("nvlink_bw", 0.1)):
                    _blend(v[metric], peers, spread, b, v[metric][peers, spread:b] * factor, 10)
    elif kind is FaultType.PCIE_DOWNGRADE:
        scale("pfc_tx_rate", victim, 1 + 40 * sev, ramp=10)
        scale("nic_throughput", victim, 1 - 0.5 * sev)
        scale("nic_throughput", peers, 1 - 0.25 * sev, ramp=20)  # 6.5 -> 4.9 Gbps job-wide
        scale("tensor_activity", np.arange(n), 1 - 0.2 * sev, ramp=20)
        scale("step_time", np.arange(n), 1 + 0.3 * sev, ramp=20)
        if rng.random() < 0.4:  # pause frames propagate: peers' PFC rises too (group effect)
            scale("pfc_tx_rate", peers, 1 + 25 * sev, ramp=60)
    elif kind is FaultType.NIC_FLAP:
        t = a
        while t < b:
            down = int(rng.integers(3, 10))
            up = int(rng.integers(1, 6))
            v["nic_throughput"][victim, t:min(b, t + down)] *= 0.05
            v["pfc_tx_rate"][victim, t:min(b, t + down)] *= 1 + 60 * sev
            t += down + up
        scale("nic_throughput", peers, 1 - 0.2 * sev, ramp=10)
        scale("step_time", np.arange(n), 1 + 0.4 * sev, ramp=10)
    elif kind is FaultType.NVLINK_ERROR:
        scale("nvlink_bw", victim, 0.15 + 0.4 * (1 - sev))
        scale("tensor_activity", victim, 1 - 0.15 * sev)
        scale("step_time", np.arange(n), 1 + 0.25 * sev, ramp=10)
    elif kind is FaultType.CPU_CONTENTION:
        _blend(v["cpu_usage"], victim, a, b,
               np.full(b - a, 60 + 35 * sev) + rng.normal(0, 3, b - a), 5)
        scale("gpu_duty_cycle", victim, 1 - 0.15 * sev)
        scale("step_time", np.arange(n), 1 + 0.15 * sev, ramp=10)
    elif kind is FaultType.MACHINE_HANG:
        # the victim stops reporting; peers block in the collective it never joins
        reported[victim, a:] = False
        scale("gpu_duty_cycle", peers, 1.2)
        scale("tensor_activity", peers, 0.05)
        scale("gpu_power", peers, 0.5)
        scale("nic_throughput", peers, 0.02)
        scale("pfc_tx_rate", peers, 0.05)
        scale("nvlink_bw", peers, 0.05)
        scale("cpu_usage", peers, 0.9)
    elif kind is FaultType.STRAGGLER:
        slow = 0.1 + 0.3 * sev
        scale("gpu_power", victim, 1 - slow * 0.8)  # throttled clocks
        scale("tensor_activity", victim, 1 - slow)
        scale("gpu_duty_cycle", victim, 1.2)  # always busy
        scale("gpu_duty_cycle", peers, 1 - slow * 0.5)  # waiting for it
        scale("step_time", np.arange(n), 1 + slow, ramp=10)


@dataclass(frozen=True)
class TraceSet:
    """Many traces: the input of training, calibration and evaluation."""

    traces: list[Trace]

    @property
    def num_faults(self) -> int:
        return sum(len(t.faults) for t in self.traces)

    @property
    def num_fault_free(self) -> int:
        return sum(1 for t in self.traces if not t.faults)


def generate_set(
    num_faults: int,
    num_fault_free: int,
    seed: int,
    machine_choices: tuple[int, ...] = (4, 8, 16, 32, 64),
    duration_s: int = 900,
    metrics: tuple[str, ...] = METRICS,
    spike_rate: float = 0.0,
) -> TraceSet:
    """``num_faults`` one-fault traces (types drawn from :data:`FAULT_MIX`) and fault-free ones.

    The same ``seed`` always gives the same traces; use disjoint seeds for training,
    calibration and evaluation.
    """
    rng = np.random.default_rng(seed)
    kinds = list(FAULT_MIX)
    probs = np.array([FAULT_MIX[k] for k in kinds])
    traces = []
    for i in range(num_faults + num_fault_free):
        fault = (kinds[int(rng.choice(len(kinds), p=probs / probs.sum()))]
                 if i < num_faults else None)
        cfg = TraceConfig(
            num_machines=int(rng.choice(machine_choices)),
            duration_s=duration_s,
            fault=fault,
            metrics=metrics,
            spike_rate=spike_rate,
        )
        job_rng = np.random.default_rng(rng.integers(2**63))
        traces.append(generate_trace(cfg, job_rng, f"s{seed}j{i}"))
    return TraceSet(traces)
