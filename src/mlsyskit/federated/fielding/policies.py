"""Who trains which cluster model: Fielding and the baselines as policies of one simulator.

A policy sees, each round, the drift reports (only policies with ``uses_reports``; every client
runs the drift test), the sampled clients and a ``loss(client, cluster)`` probe (charged on the
clock as a forward pass over the client's data), and returns a :class:`Decision`. The simulator
and the Flower strategy apply decisions the same way, so baselines and Fielding differ only in
their policy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np

from mlsyskit.federated.fielding.clustering import (
    ClusterState,
    Report,
    apply_reports,
    initial_state,
)
from mlsyskit.federated.fielding.config import FieldingConfig, ReclusterRule
from mlsyskit.federated.fielding.names import StrategyName

LossProbe = Callable[[int, int], float]


@dataclass(frozen=True)
class Decision:
    """The assignment for this round and, after a re-clustering, how models are re-formed.

    ``mixing`` (K_new, K_old) builds the new cluster models from the old ones; ``None`` keeps
    the models as they are. ``excluded`` clients (quarantined) are not asked to train.
    """

    assignment: np.ndarray
    num_clusters: int
    mixing: np.ndarray | None = None
    reclustered: bool = False
    num_moves: int = 0
    excluded: frozenset[int] = frozenset()


@dataclass(frozen=True)
class RoundContext:
    server_round: int
    reports: Mapping[int, Report]
    sampled: np.ndarray
    loss: LossProbe
    num_models: int


class ClusterPolicy(ABC):
    """Base of all policies. Attributes say what the clock must charge."""

    uses_reports: bool = False
    needs_loss_probe: bool = False
    initial_models: int = 1
    distinct_init: bool = False
    report_config: FieldingConfig = FieldingConfig()
    assignment: np.ndarray

    @abstractmethod
    def start(self, reports: Mapping[int, Report], num_clients: int) -> Decision:
        """Round 0, before any training (all clients' reports when ``uses_reports``)."""

    @abstractmethod
    def step(self, ctx: RoundContext) -> Decision:
        """One training round's assignment."""

    def models_down(self, num_models: int) -> int:
        """Models a sampled client downloads (IFCA: all of them)."""
        return 1

    def serve(self, num_clients: int, loss: LossProbe, num_models: int) -> np.ndarray:
        """Model each client is evaluated with; by default its current cluster."""
        return self.assignment


class FieldingPolicy(ClusterPolicy):
    """Fielding (``ReclusterRule.SELECTIVE``) and its rule ablations, on the pure core."""

    uses_reports = True

    def __init__(self, cfg: FieldingConfig) -> None:
        self.cfg = cfg
        self.report_config = cfg
        self.state: ClusterState | None = None

    def start(self, reports: Mapping[int, Report], num_clients: int) -> Decision:
        self.state, mix = initial_state(reports, num_clients, self.cfg)
        self.assignment = self.state.assignment
        return Decision(self.assignment, self.state.num_clusters, mix, reclustered=True)

    def step(self, ctx: RoundContext) -> Decision:
        assert self.state is not None, "start() first"
        self.state, update = apply_reports(self.state, ctx.reports, self.cfg, ctx.server_round)
        self.assignment = self.state.assignment
        excluded = (
            frozenset(int(i) for i in np.flatnonzero(self.state.quarantined(self.cfg)))
            if self.cfg.quarantine_excludes_training else frozenset()
        )
        return Decision(
            self.assignment, self.state.num_clusters, update.mixing, update.reclustered,
            len(update.moves), excluded,
        )


class FedAvgPolicy(ClusterPolicy):
    """One global model."""

    def start(self, reports: Mapping[int, Report], num_clients: int) -> Decision:
        self.assignment = np.zeros(num_clients, dtype=int)
        return Decision(self.assignment, 1)

    def step(self, ctx: RoundContext) -> Decision:
        return Decision(self.assignment, 1)


class IFCAServe(StrEnum):
    """Which model an IFCA client is *evaluated* with (training is the same in both).

    ``BEST_OF_K``: every client, sampled or not, evaluates all K models on its local training
    data at every evaluation and uses the lowest-loss one (as IFCA's reference code evaluates,
    there on the test data itself): the strongest reading, it re-assigns drifted clients at once.
    ``LAST_IDENTITY``: a client is served the cluster it picked when it last trained (IFCA's
    Algorithm 1 estimates identities only at participating clients); a client that never
    trained picks once, by loss. This is the reading under which Fielding's paper contrasts
    "all drifted clients" with "only the sampled ones".
    """

    BEST_OF_K = "best_of_k"
    LAST_IDENTITY = "last_identity"


class IFCAPolicy(ClusterPolicy):
    """IFCA (Ghosh et al. 2020): K randomly initialised models; each sampled client downloads
    all K, picks the one with the lowest loss on its data and trains it."""

    distinct_init = True
    needs_loss_probe = True

    def __init__(self, num_clusters: int, serve_rule: IFCAServe = IFCAServe.BEST_OF_K) -> None:
        self.initial_models = num_clusters
        self.serve_rule = serve_rule
        self.picked = np.zeros(0, dtype=bool)
        # the model each client last *trained* (-1: never): moves are counted against it, so
        # serving (which may pick for never-sampled clients) cannot change the count
        self.trained = np.zeros(0, dtype=int)

    def models_down(self, num_models: int) -> int:
        return num_models

    def start(self, reports: Mapping[int, Report], num_clients: int) -> Decision:
        self.assignment = np.zeros(num_clients, dtype=int)
        self.picked = np.zeros(num_clients, dtype=bool)
        self.trained = np.full(num_clients, -1)
        return Decision(self.assignment, self.initial_models)

    def _best(self, i: int, loss: LossProbe, num_models: int) -> int:
        return int(np.argmin([loss(i, k) for k in range(num_models)]))

    def step(self, ctx: RoundContext) -> Decision:
        """Sampled clients pick by loss. A *move* is a sampled client training another model
        than the one it trained last time (a first pick is not a move), whatever the serve
        rule: both rules train identically, so they count the same moves."""
        assignment = self.assignment.copy()
        for i in ctx.sampled:
            assignment[i] = self._best(int(i), ctx.loss, ctx.num_models)
        before = self.trained[ctx.sampled]
        moves = int(((before >= 0) & (assignment[ctx.sampled] != before)).sum())
        self.trained[ctx.sampled] = assignment[ctx.sampled]
        self.assignment = assignment
        self.picked[ctx.sampled] = True
        return Decision(assignment, ctx.num_models, num_moves=moves)

    def serve(self, num_clients: int, loss: LossProbe, num_models: int) -> np.ndarray:
        if self.serve_rule is IFCAServe.BEST_OF_K:
            return np.array([self._best(i, loss, num_models) for i in range(num_clients)])
        for i in np.flatnonzero(~self.picked):
            self.assignment[i] = self._best(int(i), loss, num_models)
            self.picked[i] = True
        return self.assignment.copy()


class OraclePolicy(ClusterPolicy):
    """Knows every client's true group at every round (an upper bound, not deployable)."""

    def __init__(self, truth: Callable[[int], np.ndarray], num_groups: int) -> None:
        self.truth = truth
        self.num_groups = num_groups

    def start(self, reports: Mapping[int, Report], num_clients: int) -> Decision:
        self.assignment = self.truth(0)
        return Decision(self.assignment, self.num_groups, np.ones((self.num_groups, 1)))

    def step(self, ctx: RoundContext) -> Decision:
        self.assignment = self.truth(ctx.server_round)
        return Decision(self.assignment, self.num_groups)


class FedDriftLitePolicy(ClusterPolicy):
    """A light FedDrift (Jothimurugesan et al. 2023): loss-based drift detection at *sampled*
    clients only; a drifted client joins the existing model with the lowest loss if that loss
    is acceptable, otherwise all such clients of the round form one new cluster, started from
    their old models. No hierarchical merging (the "light" part); at most ``max_clusters``."""

    needs_loss_probe = True

    def __init__(self, delta: float = 0.5, max_clusters: int = 8) -> None:
        self.delta = delta
        self.max_clusters = max_clusters
        self.last_loss: np.ndarray = np.zeros(0)

    def start(self, reports: Mapping[int, Report], num_clients: int) -> Decision:
        self.assignment = np.zeros(num_clients, dtype=int)
        self.last_loss = np.full(num_clients, np.nan)
        return Decision(self.assignment, 1)

    def step(self, ctx: RoundContext) -> Decision:
        assignment = self.assignment.copy()
        newcomers: list[int] = []
        for i in (int(c) for c in ctx.sampled):
            own = ctx.loss(i, int(assignment[i]))
            base = self.last_loss[i]
            if np.isnan(base) or own <= base + self.delta:
                self.last_loss[i] = own
                continue
            losses = [ctx.loss(i, k) for k in range(ctx.num_models)]
            best = int(np.argmin(losses))
            if losses[best] <= base + self.delta or ctx.num_models >= self.max_clusters:
                assignment[i], self.last_loss[i] = best, losses[best]
            else:
                newcomers.append(i)
        mixing = None
        num = ctx.num_models
        if newcomers:
            mixing = np.vstack([np.eye(num), np.zeros((1, num))])
            for i in newcomers:
                mixing[num, assignment[i]] += 1.0
                assignment[i] = num
                self.last_loss[i] = np.nan
            mixing[num] /= mixing[num].sum()
            num += 1
        moves = int((assignment != self.assignment).sum())
        self.assignment = assignment
        return Decision(assignment, num, mixing, reclustered=False, num_moves=moves)


def make_policy(
    name: StrategyName,
    cfg: FieldingConfig,
    truth: Callable[[int], np.ndarray] | None = None,
    num_true_groups: int = 1,
    ifca_clusters: int = 5,
) -> ClusterPolicy:
    """The policy for a strategy name (the one place names become classes)."""
    rules = {
        StrategyName.FIELDING: ReclusterRule.SELECTIVE,
        StrategyName.CLUSTER_ONCE: ReclusterRule.NEVER,
        StrategyName.MOVES_ONLY: ReclusterRule.MOVES_ONLY,
        StrategyName.GLOBAL_EVERY_DRIFT: ReclusterRule.EVERY_DRIFT,
    }
    if name in rules:
        return FieldingPolicy(replace(cfg, recluster=rules[name]))
    if name is StrategyName.FEDAVG:
        return FedAvgPolicy()
    if name is StrategyName.IFCA:
        return IFCAPolicy(ifca_clusters)
    if name is StrategyName.IFCA_LAST_IDENTITY:
        return IFCAPolicy(ifca_clusters, IFCAServe.LAST_IDENTITY)
    if name is StrategyName.FEDDRIFT:
        return FedDriftLitePolicy(max_clusters=cfg.max_clusters)
    assert truth is not None, "the oracle needs the true groups"
    return OraclePolicy(truth, num_true_groups)
