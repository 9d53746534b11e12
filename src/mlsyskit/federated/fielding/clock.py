"""The simulated clock: what a round costs a population of mobile-class clients.

A round lasts as long as its slowest sampled client: download the model(s) it needs, run its
local work (training, plus IFCA's evaluation of every cluster model), upload its update. Label
histograms from all clients travel in parallel before the round and cost one latency plus a few
bytes. The device numbers are *assumptions* in the style of FedScale's time-to-accuracy
(a mid-range phone on a mobile link), stated here and in the report, not measurements.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClockModel:
    """Assumed client devices and links.

    Parameters
    ----------
    client_flops
        Sustained training FLOP/s of a median client (2e9: a phone CPU running a tiny MLP).
    down_bps, up_bps
        Link rates in bit/s (10 Mbit/s down, 5 Mbit/s up).
    latency_s
        One request/response round trip (0.05 s).
    speed_sigma
        Client speed factors are lognormal(0, sigma) per client (0.5: stragglers ~3x slower).
    """

    client_flops: float = 2e9
    down_bps: float = 10e6
    up_bps: float = 5e6
    latency_s: float = 0.05
    speed_sigma: float = 0.5

    def speed_factors(self, num_clients: int, seed: int) -> np.ndarray:
        """Per-client slowdown factors (>0), fixed for a run by its seed."""
        return np.random.default_rng([seed, 3]).lognormal(0.0, self.speed_sigma, num_clients)

    def client_time_s(
        self, factor: float, flops: float, models_down: int, model_bytes: int
    ) -> float:
        """Seconds one sampled client takes: latency, downloads, compute, one upload."""
        comm = 8.0 * model_bytes * (models_down / self.down_bps + 1.0 / self.up_bps)
        return self.latency_s + comm + factor * flops / self.client_flops

    def report_time_s(self, report_bytes: int) -> float:
        """Seconds of the all-clients histogram query (parallel, one latency)."""
        return self.latency_s + 8.0 * report_bytes / self.up_bps if report_bytes else 0.0
