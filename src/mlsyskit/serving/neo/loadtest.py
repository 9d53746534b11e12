"""Load-vs-latency sweeps on the simulator and the sustainable rate at a latency bound.

The paper compares systems by the request rate each sustains at the same per-token latency
(per-token latency = a request's end-to-end latency / (prompt + output tokens)). Here:

* a system's *capacity* is its offline throughput (all requests at time 0);
* the sweep serves Poisson arrivals at fractions of that capacity and records the P90
  per-token latency at each rate;
* the *sustainable rate* is where the P90 curve crosses the latency bound, by linear
  interpolation between the two sweep points around the first crossing.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mlsyskit.errors import BenchmarkError
from mlsyskit.serving.engine import Engine
from mlsyskit.serving.metrics import RequestMetrics
from mlsyskit.serving.neo.engine import DeviceOnly, SimSetup, build_sim_engine
from mlsyskit.serving.neo.scheduler import NeoConfig, OffloadMode
from mlsyskit.serving.policy import KVAction
from mlsyskit.serving.runner import run_workload
from mlsyskit.serving.workload import RequestSpec

#: makes ``n`` requests at ``rate`` with ``seed``
SpecMaker = Callable[[int, float, int], list[RequestSpec]]


@dataclass(frozen=True)
class System:
    """One system of a comparison: an offload mode plus its rules or baseline options.

    ``label`` names it in curves and rates (default: the mode's name, e.g. ``"neo"``).
    """

    offload: OffloadMode
    label: str = ""
    neo: NeoConfig | None = None
    device_only: DeviceOnly | None = None

    @property
    def name(self) -> str:
        return self.label or self.offload.value

    def engine(self, setup: SimSetup, seed: int) -> Engine:
        return build_sim_engine(setup, self.offload, seed=seed, neo=self.neo,
                                device_only=self.device_only)


def as_system(system: OffloadMode | System) -> System:
    return system if isinstance(system, System) else System(system)


#: the paper's vLLM baselines: device-only with chunked prefill at 256 / 512 tokens per step
VLLM_256 = System(OffloadMode.NONE, "vllm-256", device_only=DeviceOnly(chunk_tokens=256))
VLLM_512 = System(OffloadMode.NONE, "vllm-512", device_only=DeviceOnly(chunk_tokens=512))
#: device-only that discards a preempted request's KV and recomputes it (vLLM's default)
RECOMPUTE = System(OffloadMode.NONE, "recompute",
                   device_only=DeviceOnly(preemption=KVAction.DISCARD))


@dataclass(frozen=True)
class LoadPoint:
    """One run: rate offered and what came out."""

    rate: float
    p90_token_latency_s: float
    mean_token_latency_s: float
    throughput_rps: float
    #: mean per-token latency over the steady middle of the run (arrival order: the first
    #: 10% and last 30% dropped, as the paper's ``benchmark.py`` does)
    steady_mean_token_latency_s: float = math.nan


class LatencyStat(enum.Enum):
    """Which per-token latency statistic a sustainable rate is read at."""

    P90 = "p90_token_latency_s"
    STEADY_MEAN = "steady_mean_token_latency_s"  # the paper's metric (averaged, steady middle)

    def of(self, point: LoadPoint) -> float:
        return float(getattr(point, self.value))


def steady_middle(metrics: Sequence[RequestMetrics], head: float = 0.1,
                  tail: float = 0.3) -> list[RequestMetrics]:
    """Requests in the middle of the run by arrival (warm-up and drain dropped)."""
    ordered = sorted(metrics, key=lambda m: m.arrival_s)
    lo, hi = int(len(ordered) * head), len(ordered) - int(len(ordered) * tail)
    return ordered[lo:hi] if hi > lo else ordered


def per_token_latencies(metrics: Sequence[RequestMetrics]) -> list[float]:
    return [m.latency_s / (m.num_prompt_tokens + m.num_output_tokens) for m in metrics]


def _serve(setup: SimSetup, system: System, specs: list[RequestSpec],
           seed: int) -> list[RequestMetrics]:
    metrics = run_workload(system.engine(setup, seed), specs, oracle_hints=False)
    if len(metrics) != len(specs):
        raise BenchmarkError(f"{setup.name}/{system.name}: {len(metrics)} of {len(specs)} "
                             "requests finished")
    return metrics


def run_point(
    setup: SimSetup, system: OffloadMode | System, make: SpecMaker, num_requests: int,
    rate: float, seed: int = 0,
) -> LoadPoint:
    """Serve ``num_requests`` at ``rate`` on the simulator; P90/mean per-token latency."""
    metrics = _serve(setup, as_system(system), make(num_requests, rate, seed), seed)
    ptl = per_token_latencies(metrics)
    span = max(m.finish_s for m in metrics) - min(m.arrival_s for m in metrics)
    steady = float(np.mean(per_token_latencies(steady_middle(metrics))))
    return LoadPoint(rate, float(np.percentile(ptl, 90)), float(np.mean(ptl)),
                     num_requests / max(span, 1e-12), steady)


def capacity(setup: SimSetup, system: OffloadMode | System, make: SpecMaker,
             num_requests: int, seed: int = 0) -> float:
    """Offline throughput in requests/s."""
    return run_point(setup, system, make, num_requests, math.inf, seed).throughput_rps


@dataclass(frozen=True)
class SteadyThroughput:
    """Offline throughput over the middle of a long run (the paper's Fig. 10a measure).

    All requests arrive at time 0; requests finishing in the middle ``window`` of the run's
    time span are counted, so pool fill-up (warm-up) and the drain are left out, as the
    paper's fig-10a script drops the first and last 30%. ``halves`` are the rates of the
    window's two halves: far apart means the run never reached a steady state.
    """

    rate_rps: float
    halves: tuple[float, float]
    whole_run_rps: float
    mean_tpot_s: float

    @property
    def drift(self) -> float:
        """|second half - first half| / rate: 0 in a steady state."""
        return abs(self.halves[1] - self.halves[0]) / max(self.rate_rps, 1e-12)


def window_rate(finish_s: Sequence[float], lo: float, hi: float) -> float:
    """Requests finishing in ``[lo, hi)`` per second."""
    if hi <= lo:
        raise BenchmarkError(f"empty measurement window [{lo}, {hi})")
    return sum(1 for f in finish_s if lo <= f < hi) / (hi - lo)


def steady_offline_throughput(
    setup: SimSetup, system: OffloadMode | System, make: SpecMaker, num_requests: int,
    seed: int = 0, drop: float = 0.3,
) -> SteadyThroughput:
    """Serve ``num_requests`` all at time 0 and measure the middle ``1 - 2*drop`` of the run.

    ``num_requests`` must be large enough that the pools fill well before ``drop`` of the
    run has passed; :attr:`SteadyThroughput.drift` shows whether they did.
    """
    if not 0 <= drop < 0.5:
        raise BenchmarkError(f"drop must be in [0, 0.5); got {drop}")
    metrics = _serve(setup, as_system(system), make(num_requests, math.inf, seed), seed)
    finish = [m.finish_s for m in metrics]
    end = max(finish)
    lo, hi = drop * end, (1 - drop) * end
    mid = (lo + hi) / 2
    return SteadyThroughput(
        window_rate(finish, lo, hi),
        (window_rate(finish, lo, mid), window_rate(finish, mid, hi)),
        num_requests / end,
        float(np.mean([m.tpot_s for m in metrics])),
    )


def sweep(
    setup: SimSetup, system: OffloadMode | System, make: SpecMaker, num_requests: int,
    rates: Sequence[float], seed: int = 0,
) -> list[LoadPoint]:
    return [run_point(setup, system, make, num_requests, r, seed) for r in rates]


def sustainable_rate(points: Sequence[LoadPoint], bound_s: float,
                     stat: LatencyStat = LatencyStat.P90) -> float:
    """Rate where the per-token latency ``stat`` first exceeds ``bound_s`` (interpolated).

    If no point exceeds it the last rate is returned (a lower bound); if the first already
    does, the rate is scaled down in proportion (an upper bound).
    """
    pts = sorted(points, key=lambda p: p.rate)
    prev = None
    for p in pts:
        if stat.of(p) > bound_s:
            if prev is None:
                return p.rate * bound_s / stat.of(p)
            frac = (bound_s - stat.of(prev)) / (stat.of(p) - stat.of(prev))
            return prev.rate + frac * (p.rate - prev.rate)
        prev = p
    return pts[-1].rate


@dataclass(frozen=True)
class Comparison:
    """Sweeps of several systems on one setup and workload, and their sustainable rates."""

    setup: str
    workload: str
    bound_s: float
    curves: dict[str, list[LoadPoint]]
    rates: dict[str, float]
    capacities: dict[str, float]

    def gain(self, system: str = "neo", base: str = "none") -> float:
        """``rate(system) / rate(base)``."""
        return self.rates[system] / self.rates[base]


def compare(
    setup: SimSetup,
    make: SpecMaker,
    *,
    workload: str,
    systems: Sequence[OffloadMode | System] = (OffloadMode.NONE, OffloadMode.NEO),
    num_requests: int = 300,
    fractions: Sequence[float] = (0.3, 0.55, 0.75, 0.9, 1.0, 1.15),
    bound_factor: float = 2.0,
    max_extra_points: int = 6,
    seed: int = 0,
    stat: LatencyStat = LatencyStat.P90,
) -> Comparison:
    """Sweep each system at fractions of its own capacity and find its sustainable rate.

    The latency bound is ``bound_factor`` × the device-only system's P90 per-token latency
    at its lightest sweep point, so every system is judged at one latency (the plain
    device-only system, ``"none"``, is always swept, first). Sweeps grow by 25% steps past
    the last fraction (at most ``max_extra_points``) until P90 crosses the bound.
    """
    curves: dict[str, list[LoadPoint]] = {}
    caps: dict[str, float] = {}
    bound = math.inf
    base = System(OffloadMode.NONE)
    order = [base, *[s for s in map(as_system, systems) if s != base]]
    if len({s.name for s in order}) != len(order):
        raise BenchmarkError(f"two systems share a name: {[s.name for s in order]}")
    for system in order:
        cap = caps[system.name] = capacity(setup, system, make, num_requests, seed)
        points = sweep(setup, system, make, num_requests, [f * cap for f in fractions], seed)
        if system is base:
            bound = bound_factor * stat.of(min(points, key=lambda p: p.rate))
        # offline capacity of a finite run underestimates the sustainable rate; extend the
        # sweep until the latency bound is crossed
        extra = 0
        while stat.of(points[-1]) <= bound and extra < max_extra_points:
            points.append(run_point(setup, system, make, num_requests,
                                    points[-1].rate * 1.25, seed))
            extra += 1
        curves[system.name] = points
    rates = {name: sustainable_rate(points, bound, stat) for name, points in curves.items()}
    return Comparison(setup.name, workload, bound, curves, rates, caps)
