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

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mlsyskit.errors import BenchmarkError
from mlsyskit.serving.metrics import RequestMetrics
from mlsyskit.serving.neo.engine import SimSetup, build_sim_engine
from mlsyskit.serving.neo.scheduler import OffloadMode
from mlsyskit.serving.runner import run_workload
from mlsyskit.serving.workload import RequestSpec

#: makes ``n`` requests at ``rate`` with ``seed``
SpecMaker = Callable[[int, float, int], list[RequestSpec]]


@dataclass(frozen=True)
class LoadPoint:
    """One run: rate offered and what came out."""

    rate: float
    p90_token_latency_s: float
    mean_token_latency_s: float
    throughput_rps: float


def per_token_latencies(metrics: Sequence[RequestMetrics]) -> list[float]:
    return [m.latency_s / (m.num_prompt_tokens + m.num_output_tokens) for m in metrics]


def run_point(
    setup: SimSetup, offload: OffloadMode, make: SpecMaker, num_requests: int, rate: float,
    seed: int = 0,
) -> LoadPoint:
    """Serve ``num_requests`` at ``rate`` on the simulator; P90/mean per-token latency."""
    engine = build_sim_engine(setup, offload, seed=seed)
    specs = make(num_requests, rate, seed)
    metrics = run_workload(engine, specs, oracle_hints=False)
    if len(metrics) != num_requests:
        raise BenchmarkError(f"{setup.name}/{offload.value}: {len(metrics)} of {num_requests} "
                             "requests finished")
    ptl = per_token_latencies(metrics)
    span = max(m.finish_s for m in metrics) - min(m.arrival_s for m in metrics)
    return LoadPoint(rate, float(np.percentile(ptl, 90)), float(np.mean(ptl)),
                     num_requests / max(span, 1e-12))


def capacity(setup: SimSetup, offload: OffloadMode, make: SpecMaker, num_requests: int,
             seed: int = 0) -> float:
    """Offline throughput in requests/s."""
    return run_point(setup, offload, make, num_requests, math.inf, seed).throughput_rps


def sweep(
    setup: SimSetup, offload: OffloadMode, make: SpecMaker, num_requests: int,
    rates: Sequence[float], seed: int = 0,
) -> list[LoadPoint]:
    return [run_point(setup, offload, make, num_requests, r, seed) for r in rates]


def sustainable_rate(points: Sequence[LoadPoint], bound_s: float) -> float:
    """Rate where P90 per-token latency first exceeds ``bound_s`` (interpolated).

    If no point exceeds it the last rate is returned (a lower bound); if the first already
    does, the rate is scaled down in proportion (an upper bound).
    """
    pts = sorted(points, key=lambda p: p.rate)
    prev = None
    for p in pts:
        if p.p90_token_latency_s > bound_s:
            if prev is None:
                return p.rate * bound_s / p.p90_token_latency_s
            frac = (bound_s - prev.p90_token_latency_s) / (
                p.p90_token_latency_s - prev.p90_token_latency_s
            )
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
    systems: Sequence[OffloadMode] = (OffloadMode.NONE, OffloadMode.NEO),
    num_requests: int = 300,
    fractions: Sequence[float] = (0.3, 0.55, 0.75, 0.9, 1.0, 1.15),
    bound_factor: float = 2.0,
    max_extra_points: int = 6,
    seed: int = 0,
) -> Comparison:
    """Sweep each system at fractions of its own capacity and find its sustainable rate.

    The latency bound is ``bound_factor`` × the device-only system's P90 per-token latency
    at its lightest sweep point, so every system is judged at one latency (device-only is
    always swept, first). Sweeps grow by 25% steps past the last fraction (at most
    ``max_extra_points``) until P90 crosses the bound.
    """
    curves: dict[str, list[LoadPoint]] = {}
    caps: dict[str, float] = {}
    bound = math.inf
    for mode in (OffloadMode.NONE, *[m for m in systems if m is not OffloadMode.NONE]):
        cap = caps[mode.value] = capacity(setup, mode, make, num_requests, seed)
        points = sweep(setup, mode, make, num_requests, [f * cap for f in fractions], seed)
        if mode is OffloadMode.NONE:
            bound = bound_factor * min(points, key=lambda p: p.rate).p90_token_latency_s
        # offline capacity of a finite run underestimates the sustainable rate; extend the
        # sweep until the latency bound is crossed
        extra = 0
        while points[-1].p90_token_latency_s <= bound and extra < max_extra_points:
            points.append(run_point(setup, mode, make, num_requests, points[-1].rate * 1.25,
                                    seed))
            extra += 1
        curves[mode.value] = points
    rates = {name: sustainable_rate(points, bound) for name, points in curves.items()}
    return Comparison(setup.name, workload, bound, curves, rates, caps)
