"""The deterministic in-process simulator: one federated run of one policy on one scenario.

It runs the same clustering core and the same local training as the Flower apps, without
messaging, so a 200-round sweep of every strategy fits in minutes on 2 cores. A parity test runs
a small case through Flower's simulation engine and checks the same accuracy curve.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from mlsyskit.federated.fielding.clock import ClockModel
from mlsyskit.federated.fielding.clustering import Report, client_should_report
from mlsyskit.federated.fielding.model import ModelSpec, evaluate, init_params, train_local
from mlsyskit.federated.fielding.params import Params, mix_models, weighted_average
from mlsyskit.federated.fielding.policies import ClusterPolicy, RoundContext
from mlsyskit.federated.fielding.representation import Representation, client_vector
from mlsyskit.federated.fielding.scenarios import Scenario


@dataclass(frozen=True)
class SimConfig:
    """Round structure of a run."""

    clients_per_round: int = 20
    eval_every: int = 1
    final_window: float = 0.1
    seed: int = 0
    clock: ClockModel = field(default_factory=ClockModel)
    representation: Representation = Representation.LABELS


@dataclass(frozen=True)
class RunResult:
    """One run's curves (per evaluated round) and totals."""

    strategy: str
    rounds: np.ndarray
    accuracy: np.ndarray
    time_s: np.ndarray
    num_clusters: np.ndarray
    num_global_reclusters: int
    num_moves: int
    bytes_down: float
    bytes_up: float
    recluster_rounds: tuple[int, ...] = ()
    client_accuracy: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    def final_client_accuracy(self) -> np.ndarray:
        """(N,) each client's accuracy over the final window (NaN for malicious clients)."""
        tail = max(1, round(0.1 * len(self.accuracy)))
        return np.asarray(self.client_accuracy[-tail:].mean(0))

    @property
    def final_accuracy(self) -> float:
        """Mean accuracy over the last 10% of evaluated rounds (robust to one noisy round)."""
        tail = max(1, round(0.1 * len(self.accuracy)))
        return float(self.accuracy[-tail:].mean())

    def time_to(self, target: float, smooth: int = 5) -> tuple[float, float]:
        """(rounds, simulated seconds) until the mean of the last ``smooth`` evaluations first
        reaches ``target``; ``inf`` if never."""
        acc = np.convolve(self.accuracy, np.ones(smooth) / smooth, mode="valid")
        hit = np.flatnonzero(acc >= target)
        if not len(hit):
            return float("inf"), float("inf")
        j = int(hit[0]) + smooth - 1
        return float(self.rounds[j]), float(self.time_s[j])


def client_reports(
    scenario: Scenario,
    server_round: int,
    last: list[np.ndarray | None],
    policy: ClusterPolicy,
    representation: Representation = Representation.LABELS,
) -> dict[int, Report]:
    """Every client runs the drift test; drifted ones (and liars, every round) report.

    A malicious client sends a fresh random Dirichlet(1) histogram each round (notes 1.2 g).
    """
    cfg = policy.report_config
    c = scenario.dataset.num_classes
    reports: dict[int, Report] = {}
    for i in range(scenario.spec.num_clients):
        data = scenario.client(i, server_round)
        lie = None
        if scenario.malicious[i]:
            lie = np.random.default_rng([scenario.seed, 4, i, server_round]).dirichlet(np.ones(c))
        hist = client_vector(data.x_train, data.y_train, c, scenario.dataset.image_side,
                             representation, labels_override=lie)
        if client_should_report(hist, last[i], len(data.y_train), cfg):
            reports[i] = Report(hist, len(data.y_train))
            last[i] = hist
    return reports


def run_simulation(
    scenario: Scenario,
    policy: ClusterPolicy,
    spec: ModelSpec,
    sim: SimConfig,
    name: str = "",
    progress: Callable[[int], None] | None = None,
) -> RunResult:
    """Run ``scenario.spec.num_rounds`` rounds of ``policy`` and return its curves."""
    torch.set_num_threads(1)
    n = scenario.spec.num_clients
    rng = np.random.default_rng([sim.seed, 5])
    speed = sim.clock.speed_factors(n, sim.seed)
    models: list[Params] = [
        init_params(spec, sim.seed * 1000 + (k if policy.distinct_init else 0))
        for k in range(policy.initial_models)
    ]
    last: list[np.ndarray | None] = [None] * n
    hist_bytes = 4 * scenario.dataset.num_classes
    bytes_down = bytes_up = 0.0
    evaluations: dict[int, int] = {}

    def loss(i: int, k: int) -> float:
        data = scenario.client(i, current_round)
        evaluations[i] = evaluations.get(i, 0) + 1
        return evaluate(models[k], data.x_train, data.y_train)[0]

    def apply(decision_mixing: np.ndarray | None) -> None:
        nonlocal models
        if decision_mixing is not None:
            models = mix_models(models, decision_mixing)

    def collect(t: int) -> dict[int, Report]:
        if not policy.uses_reports:
            return {}
        return client_reports(scenario, t, last, policy, sim.representation)

    current_round = 0
    reports = collect(0)
    if reports:
        hist_bytes = 4 * len(next(iter(reports.values())).vector)
    bytes_up += hist_bytes * len(reports)
    decision = policy.start(reports, n)
    apply(decision.mixing)
    now = sim.clock.report_time_s(hist_bytes if reports else 0)
    rounds, accs, times, ks = [], [], [], []
    client_acc: list[np.ndarray] = []
    num_global, num_moves = 0, 0
    recluster_rounds: list[int] = []
    benign = np.flatnonzero(~scenario.malicious)
    for t in range(1, scenario.spec.num_rounds + 1):
        current_round = t
        evaluations.clear()
        reports = collect(t)
        sampled = np.sort(rng.choice(n, min(sim.clients_per_round, n), replace=False))
        decision = policy.step(RoundContext(t, reports, sampled, loss, len(models)))
        apply(decision.mixing)
        num_global += int(decision.reclustered)
        if decision.reclustered:
            recluster_rounds.append(t)
        num_moves += decision.num_moves
        updates: dict[int, list[tuple[Params, float]]] = {}
        slowest = 0.0
        down = policy.models_down(len(models))
        for i in (int(c) for c in sampled if int(c) not in decision.excluded):
            data = scenario.client(i, t)
            k = int(decision.assignment[i])
            seed = sim.seed * 7919 + t * 1009 + i
            new = train_local(models[k], data.x_train, data.y_train, spec, seed=seed)
            updates.setdefault(k, []).append((new, float(len(data.y_train))))
            flops = 3.0 * spec.forward_flops_per_sample * len(data.y_train) * spec.local_epochs
            flops += spec.forward_flops_per_sample * len(data.y_train) * evaluations.get(i, 0)
            took = sim.clock.client_time_s(float(speed[i]), flops, down, spec.bytes)
            slowest = max(slowest, took)
            bytes_down += down * spec.bytes
            bytes_up += spec.bytes
        for k, items in updates.items():
            models[k] = weighted_average([m for m, _ in items], [w for _, w in items])
        bytes_up += hist_bytes * len(reports)
        now += slowest + sim.clock.report_time_s(hist_bytes if policy.uses_reports else 0)
        if t % sim.eval_every == 0 or t == scenario.spec.num_rounds:
            serve = policy.serve(n, loss, len(models))
            correct = [
                evaluate(models[int(serve[i])], scenario.client(int(i), t).x_test,
                         scenario.client(int(i), t).y_test)[1].mean()
                for i in benign
            ]
            per_client = np.full(n, np.nan)
            per_client[benign] = correct
            client_acc.append(per_client)
            rounds.append(t)
            accs.append(float(np.mean(correct)))
            times.append(now)
            ks.append(len(np.unique(decision.assignment[benign])))
        if progress is not None:
            progress(t)
    return RunResult(
        name, np.array(rounds), np.array(accs), np.array(times), np.array(ks),
        num_global, num_moves, bytes_down, bytes_up, tuple(recluster_rounds),
        np.array(client_acc),
    )
