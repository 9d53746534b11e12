"""Seeded k-means++ and silhouette in NumPy, and the choice of K.

Written here (not taken from scikit-learn) because the baselines re-cluster up to every round:
on a few hundred label vectors a NumPy Lloyd loop takes microseconds, and every random choice
comes from the generator the caller passes, so a run is reproducible from its seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Clustering:
    """A partition of points: ``labels[i]`` in ``range(len(centres))``, and its quality."""

    labels: np.ndarray
    centres: np.ndarray
    silhouette: float

    @property
    def num_clusters(self) -> int:
        return int(self.centres.shape[0])


def pairwise_sq_dist(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances, shape (len(x), len(c)), clipped at 0 against round-off."""
    d = (x * x).sum(1)[:, None] - 2.0 * x @ c.T + (c * c).sum(1)[None, :]
    return np.maximum(d, 0.0)


def _plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centres = [x[int(rng.integers(len(x)))]]
    d2 = pairwise_sq_dist(x, np.asarray(centres))[:, 0]
    for _ in range(1, k):
        total = d2.sum()
        idx = int(rng.choice(len(x), p=d2 / total)) if total > 0 else int(rng.integers(len(x)))
        centres.append(x[idx])
        d2 = np.minimum(d2, pairwise_sq_dist(x, x[idx : idx + 1])[:, 0])
    return np.asarray(centres, dtype=float)


def kmeans(
    x: np.ndarray, k: int, rng: np.random.Generator, restarts: int = 5, iters: int = 50
) -> tuple[np.ndarray, np.ndarray, float]:
    """Lloyd's k-means with k-means++ seeding; best of ``restarts`` by inertia.

    Returns ``(labels, centres, inertia)``. Empty clusters keep their previous centre, so the
    number of centres is always ``k``.
    """
    best: tuple[np.ndarray, np.ndarray, float] | None = None
    for _ in range(restarts):
        centres = _plus_plus(x, k, rng)
        labels = np.zeros(len(x), dtype=int)
        for it in range(iters):
            new_labels = pairwise_sq_dist(x, centres).argmin(1)
            if it > 0 and np.array_equal(new_labels, labels):
                break
            labels = new_labels
            for j in range(k):
                members = x[labels == j]
                if len(members):
                    centres[j] = members.mean(0)
        inertia = float(pairwise_sq_dist(x, centres)[np.arange(len(x)), labels].sum())
        if best is None or inertia < best[2] - 1e-12:
            best = (labels, centres.copy(), inertia)
    assert best is not None
    return best


def silhouette(
    x: np.ndarray, labels: np.ndarray, rng: np.random.Generator, sample: int = 1000
) -> float:
    """Mean silhouette coefficient; -1 when fewer than two clusters are non-empty.

    Points in singleton clusters score 0 (Rousseeuw's convention). Above ``sample`` points
    a uniform sample is scored, to stay O(sample^2).
    """
    present = np.unique(labels)
    if len(present) < 2:
        return -1.0
    if len(x) > sample:
        keep = rng.choice(len(x), size=sample, replace=False)
        x, labels = x[keep], labels[keep]
        if len(np.unique(labels)) < 2:
            return -1.0
    dist = np.sqrt(pairwise_sq_dist(x, x))
    scores = np.zeros(len(x))
    clusters = np.unique(labels)
    masks = {int(c): labels == c for c in clusters}
    for i in range(len(x)):
        own = masks[int(labels[i])]
        n_own = int(own.sum())
        if n_own <= 1:
            continue
        a = dist[i, own].sum() / (n_own - 1)
        b = min(dist[i, m].mean() for c, m in masks.items() if c != int(labels[i]))
        scores[i] = (b - a) / max(a, b) if max(a, b) > 0 else 0.0
    return float(scores.mean())


def choose_k(
    x: np.ndarray,
    max_k: int,
    min_silhouette: float,
    rng: np.random.Generator,
    restarts: int = 5,
    iters: int = 50,
    sample: int = 1000,
) -> Clustering:
    """k-means for K in [2, max_k], keeping the K with the best silhouette.

    K = 1 (one centre, the mean) when the best silhouette is below ``min_silhouette``: the
    silhouette is undefined for one cluster, and this is how an IID population collapses to
    FedAvg. Distinct points bound K, so a population of identical vectors is one cluster.
    """
    num_distinct = len(np.unique(np.round(x, 12), axis=0))
    one = Clustering(np.zeros(len(x), dtype=int), x.mean(0, keepdims=True), -1.0)
    best = one
    for k in range(2, min(max_k, num_distinct) + 1):
        labels, centres, _ = kmeans(x, k, rng, restarts, iters)
        used = np.unique(labels)
        if len(used) < k:  # drop empty clusters, relabel 0..k'-1
            remap = {int(o): n for n, o in enumerate(used)}
            labels = np.array([remap[int(v)] for v in labels])
            centres = centres[used]
        score = silhouette(x, labels, rng, sample)
        if score > best.silhouette + 1e-12:
            best = Clustering(labels, centres, score)
    if best.silhouette < min_silhouette:
        return Clustering(one.labels, one.centres, best.silhouette)
    return best
