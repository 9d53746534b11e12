"""Drift detection and selective re-clustering: pure functions on a frozen :class:`ClusterState`.

One round on the server (section 1.2 of the notes, our reconstruction of Fielding):

1. every client compares its current label histogram with the last one it reported
   (:func:`client_should_report`, run client-side, on *all* clients) and only drifted clients
   send their new vector;
2. :func:`apply_reports` moves each drifted client to its nearest centre, updates the centres
   from non-quarantined members and counts the drifted clients that are *far* from every
   centre; enough far clients trigger a global re-clustering with automatic K
   (:func:`global_recluster`), whose new cluster models start from their members' previous
   models (the returned mixing matrix).

Nothing here knows about models, Flower or time; the simulator and the Flower strategy both
call these functions, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from mlsyskit.federated.fielding.config import (
    CentreRule,
    FieldingConfig,
    FieldingError,
    ReclusterRule,
)
from mlsyskit.federated.fielding.kmeans import choose_k, pairwise_sq_dist


@dataclass(frozen=True)
class Report:
    """A client's drift report: its new representation vector and its local sample count."""

    vector: np.ndarray
    num_samples: int


@dataclass(frozen=True)
class ClusterState:
    """What the server knows after a round.

    Attributes
    ----------
    vectors
        (N, D) last vector each client reported.
    num_samples
        (N,) sample counts from the last reports (weights of the model mixing).
    assignment
        (N,) cluster of each client.
    centres
        (K, D) cluster centres; a cluster may be empty and keeps its centre (and model).
    ref_radius
        Median client-to-own-centre distance right after the last global clustering.
    report_rounds
        Per client, the rounds of its reports inside the quarantine window.
    num_global
        Global (re-)clusterings so far, the initial one included.
    """

    vectors: np.ndarray
    num_samples: np.ndarray
    assignment: np.ndarray
    centres: np.ndarray
    ref_radius: float
    report_rounds: tuple[tuple[int, ...], ...]
    num_global: int

    @property
    def num_clients(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def num_clusters(self) -> int:
        return int(self.centres.shape[0])

    def quarantined(self, cfg: FieldingConfig) -> np.ndarray:
        """(N,) bool: clients that reported more than ``quarantine_reports`` times lately."""
        return np.array([len(r) > cfg.quarantine_reports for r in self.report_rounds])


@dataclass(frozen=True)
class ClusterUpdate:
    """What changed in one round, for the caller that owns the models.

    ``mixing`` is set after a global re-clustering: row j gives the weights of the *old*
    cluster models that new cluster j starts from (rows sum to 1).
    """

    moves: tuple[tuple[int, int, int], ...]
    num_far: int
    reclustered: bool
    mixing: np.ndarray | None


def tv_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Total-variation distance between two distributions, 0.5 * L1."""
    return float(0.5 * np.abs(np.asarray(p, float) - np.asarray(q, float)).sum())


def label_histogram(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Normalised label histogram (sums to 1; all zeros for an empty client)."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=num_classes)[:num_classes]
    total = counts.sum()
    return counts / total if total else counts.astype(float)


def client_should_report(
    current: np.ndarray, last: np.ndarray | None, num_samples: int, cfg: FieldingConfig
) -> bool:
    """Client-side drift test: report when TV(current, last reported) > ``drift_threshold``.

    A client that never reported always reports (if it has ``min_samples``); the first
    4 floats of a report are cheap, so every client runs this every round.
    """
    if num_samples < cfg.min_samples:
        return False
    if last is None:
        return True
    return tv_distance(current[: len(last)], last) > cfg.drift_threshold


def _rng(cfg: FieldingConfig, server_round: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, server_round])


def _centres(
    vectors: np.ndarray, assignment: np.ndarray, old: np.ndarray, mask: np.ndarray, rule: CentreRule
) -> np.ndarray:
    centres = old.copy()
    for k in range(len(old)):
        members = vectors[(assignment == k) & mask]
        if len(members):
            centres[k] = np.median(members, 0) if rule is CentreRule.MEDIAN else members.mean(0)
    return centres


def _nearest(vectors: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d2 = pairwise_sq_dist(vectors, centres)
    nearest = d2.argmin(1)
    return nearest, np.sqrt(d2[np.arange(len(vectors)), nearest])


def mixing_matrix(
    old_assignment: np.ndarray, new_assignment: np.ndarray, weights: np.ndarray,
    num_old: int, num_new: int,
) -> np.ndarray:
    """(K_new, K_old): new cluster j starts from the sample-weighted mix of its members' old
    models. A new cluster without members (cannot happen after k-means) gets uniform weights."""
    mix = np.zeros((num_new, num_old))
    np.add.at(mix, (new_assignment, old_assignment), np.maximum(weights, 1e-12))
    rows = mix.sum(1, keepdims=True)
    empty = rows[:, 0] == 0
    mix[empty] = 1.0 / num_old
    rows[empty] = 1.0
    return mix / rows


def global_recluster(
    state: ClusterState, cfg: FieldingConfig, server_round: int
) -> tuple[ClusterState, np.ndarray]:
    """Re-cluster all non-quarantined clients with automatic K; quarantined clients go to
    their nearest new centre. Returns the new state and the model mixing matrix."""
    quarantined = state.quarantined(cfg)
    trusted = ~quarantined
    if not trusted.any():  # nobody to trust: keep the clusters as they are
        trusted = np.ones_like(quarantined)
    rng = _rng(cfg, server_round)
    found = choose_k(
        state.vectors[trusted], cfg.max_clusters, cfg.min_silhouette, rng,
        cfg.kmeans_restarts, cfg.kmeans_iters, cfg.silhouette_sample,
    )
    assignment = np.empty(state.num_clients, dtype=int)
    assignment[trusted] = found.labels
    if (~trusted).any():
        assignment[~trusted] = _nearest(state.vectors[~trusted], found.centres)[0]
    centres = _centres(state.vectors, assignment, found.centres, trusted, cfg.centre_rule)
    rows = np.arange(state.num_clients)
    dist = np.sqrt(pairwise_sq_dist(state.vectors, centres)[rows, assignment])
    mix = mixing_matrix(
        state.assignment, assignment, state.num_samples, state.num_clusters, len(centres)
    )
    new = replace(
        state, assignment=assignment, centres=centres,
        ref_radius=float(np.median(dist[trusted])), num_global=state.num_global + 1,
    )
    return new, mix


def initial_state(
    reports: Mapping[int, Report], num_clients: int, cfg: FieldingConfig, server_round: int = 0
) -> tuple[ClusterState, np.ndarray]:
    """First global clustering from every client's report (all N must report)."""
    missing = sorted(set(range(num_clients)) - set(reports))
    if missing:
        raise FieldingError(
            f"the initial clustering needs a report from every client; missing {missing[:10]}"
        )
    dim = len(next(iter(reports.values())).vector)
    vectors = np.zeros((num_clients, dim))
    sizes = np.zeros(num_clients)
    for i, rep in reports.items():
        vectors[i], sizes[i] = rep.vector, rep.num_samples
    seed = ClusterState(
        vectors=vectors, num_samples=sizes, assignment=np.zeros(num_clients, dtype=int),
        centres=vectors.mean(0, keepdims=True), ref_radius=0.0,
        report_rounds=tuple((server_round,) for _ in range(num_clients)), num_global=0,
    )
    return global_recluster(seed, cfg, server_round)


def far_threshold(state: ClusterState, cfg: FieldingConfig) -> float:
    """Distance beyond which a drifted client is far from every centre."""
    return max(cfg.far_factor * state.ref_radius, cfg.far_min)


def apply_reports(
    state: ClusterState, reports: Mapping[int, Report], cfg: FieldingConfig, server_round: int
) -> tuple[ClusterState, ClusterUpdate]:
    """One server round of Fielding's selective re-clustering (see the module docstring).

    Raises
    ------
    FieldingError
        A report names an unknown client or has the wrong dimension.
    """
    for i, rep in reports.items():
        if not 0 <= i < state.num_clients or len(rep.vector) != state.vectors.shape[1]:
            raise FieldingError(
                f"round {server_round}: bad report from client {i} (N={state.num_clients}, "
                f"dim {len(rep.vector)} vs {state.vectors.shape[1]})"
            )
    horizon = server_round - cfg.quarantine_window
    rounds = tuple(
        tuple(r for r in old if r > horizon) + ((server_round,) if i in reports else ())
        for i, old in enumerate(state.report_rounds)
    )
    vectors, sizes = state.vectors.copy(), state.num_samples.copy()
    for i, rep in reports.items():
        vectors[i], sizes[i] = rep.vector, rep.num_samples
    state = replace(state, vectors=vectors, num_samples=sizes, report_rounds=rounds)
    if cfg.recluster is ReclusterRule.NEVER or not reports:
        return state, ClusterUpdate((), 0, False, None)
    if cfg.recluster is ReclusterRule.EVERY_DRIFT:
        new, mix = global_recluster(state, cfg, server_round)
        return new, ClusterUpdate((), len(reports), True, mix)

    drifted = np.array(sorted(reports))
    nearest, dist = _nearest(vectors[drifted], state.centres)
    assignment = state.assignment.copy()
    moves = tuple(
        (int(i), int(assignment[i]), int(k))
        for i, k in zip(drifted, nearest, strict=True)
        if assignment[i] != k
    )
    assignment[drifted] = nearest
    trusted = ~state.quarantined(cfg)
    centres = _centres(vectors, assignment, state.centres, trusted, cfg.centre_rule)
    state = replace(state, assignment=assignment, centres=centres)
    num_far = int(((dist > far_threshold(state, cfg)) & trusted[drifted]).sum())
    needed = max(cfg.trigger_min_clients, int(np.ceil(cfg.trigger_fraction * state.num_clients)))
    if cfg.recluster is ReclusterRule.SELECTIVE and num_far >= needed:
        new, mix = global_recluster(state, cfg, server_round)
        return new, ClusterUpdate(moves, num_far, True, mix)
    return state, ClusterUpdate(moves, num_far, False, None)
