"""Baseline scorers, run through the same calibration, continuity and evaluation as Minder.

* :class:`MahalanobisScorer` - the paper's baseline: each machine's metric vector at each second,
  taken relative to its group's median, scored by Mahalanobis distance under a covariance fitted
  on normal data. No denoising, no per-metric separation.
* :class:`ZScoreScorer` - each machine against its *own* history (Aegis-style): robust Z-score
  (median / MAD over the pass) per metric, the largest over metrics. No peer comparison.
* :class:`IsolationForestScorer` - scikit-learn's IsolationForest on the same peer-relative
  vectors as Mahalanobis, fitted on normal data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlsyskit.training.minder.frame import MetricFrame
from mlsyskit.training.minder.peers import group_indices
from mlsyskit.training.minder.scorers import ALL_METRICS_CHANNEL, Scorer, ScoreSet


def _peer_relative(scaled: np.ndarray, groups: Sequence[str]) -> np.ndarray:
    """``(M, N, T)`` scaled values -> ``(N, T, M)`` deviations from the group median."""
    out = np.zeros_like(scaled)
    for idx in group_indices(groups):
        sub = scaled[:, idx]
        out[:, idx] = sub - np.median(sub, axis=1, keepdims=True)
    return np.moveaxis(out, 0, -1)


def _minus_group_median(score: np.ndarray, groups: Sequence[str]) -> np.ndarray:
    out = np.zeros_like(score)
    for idx in group_indices(groups):
        if len(idx) > 1:
            out[idx] = score[idx] - np.median(score[idx], axis=0, keepdims=True)
    return out


class MahalanobisScorer(Scorer):
    """Mahalanobis distance of each machine's peer-relative metric vector, per second."""

    def __init__(self, *, metrics: Sequence[str] | None = None, max_samples: int = 50000,
                 random_state: int = 0) -> None:
        self.metrics = metrics
        self.max_samples = max_samples
        self.random_state = random_state

    @property
    def channels(self) -> tuple[str, ...]:
        return (ALL_METRICS_CHANNEL,)

    def fit(self, frames: Sequence[MetricFrame]) -> MahalanobisScorer:
        from sklearn.covariance import LedoitWolf

        self.metrics_ = self._fit_metrics(frames)
        rows = np.concatenate([
            _peer_relative(self._scaled_fit(f), f.groups).reshape(-1, len(self.metrics_))
            for f in frames
        ])
        rng = np.random.default_rng(self.random_state)
        if len(rows) > self.max_samples:
            rows = rows[rng.choice(len(rows), self.max_samples, replace=False)]
        cov = LedoitWolf().fit(rows)
        self.precision_ = cov.precision_.astype(np.float32)
        self.location_ = cov.location_.astype(np.float32)
        return self

    def _scaled_fit(self, frame: MetricFrame) -> np.ndarray:
        from mlsyskit.training.minder.frame import minmax_scale

        return minmax_scale(frame.select(list(self.metrics_)).values)

    def score(self, frame: MetricFrame) -> ScoreSet:
        dev = _peer_relative(self._scaled(frame), frame.groups) - self.location_
        md = np.sqrt(np.maximum(np.einsum("ntm,mk,ntk->nt", dev, self.precision_, dev), 0.0))
        scores = _minus_group_median(md, frame.groups)
        return ScoreSet(self.channels, frame.machines, scores[None], frame.timestamps)


class ZScoreScorer(Scorer):
    """Largest robust Z-score over metrics of each machine against its own history."""

    def __init__(self, *, metrics: Sequence[str] | None = None) -> None:
        self.metrics = metrics

    @property
    def channels(self) -> tuple[str, ...]:
        return (ALL_METRICS_CHANNEL,)

    def fit(self, frames: Sequence[MetricFrame]) -> ZScoreScorer:
        self.metrics_ = self._fit_metrics(frames)
        return self

    def score(self, frame: MetricFrame) -> ScoreSet:
        scaled = self._scaled(frame)
        med = np.median(scaled, axis=2, keepdims=True)
        mad = np.median(np.abs(scaled - med), axis=2, keepdims=True) * 1.4826
        z = np.abs(scaled - med) / np.maximum(mad, 1e-3)
        return ScoreSet(self.channels, frame.machines, z.max(axis=0)[None], frame.timestamps)


class IsolationForestScorer(Scorer):
    """IsolationForest anomaly score of each machine's peer-relative vector, per second."""

    def __init__(self, *, metrics: Sequence[str] | None = None, n_estimators: int = 100,
                 max_samples: int = 20000, random_state: int = 0) -> None:
        self.metrics = metrics
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.random_state = random_state

    @property
    def channels(self) -> tuple[str, ...]:
        return (ALL_METRICS_CHANNEL,)

    def fit(self, frames: Sequence[MetricFrame]) -> IsolationForestScorer:
        from sklearn.ensemble import IsolationForest

        from mlsyskit.training.minder.frame import minmax_scale

        self.metrics_ = self._fit_metrics(frames)
        rows = np.concatenate([
            _peer_relative(minmax_scale(f.select(list(self.metrics_)).values), f.groups)
            .reshape(-1, len(self.metrics_))
            for f in frames
        ])
        rng = np.random.default_rng(self.random_state)
        if len(rows) > self.max_samples:
            rows = rows[rng.choice(len(rows), self.max_samples, replace=False)]
        self.forest_ = IsolationForest(
            n_estimators=self.n_estimators, random_state=self.random_state
        ).fit(rows)
        return self

    def score(self, frame: MetricFrame) -> ScoreSet:
        dev = _peer_relative(self._scaled(frame), frame.groups)
        n, t, m = dev.shape
        raw = -self.forest_.score_samples(dev.reshape(-1, m)).reshape(n, t)
        scores = _minus_group_median(raw.astype(np.float32), frame.groups)
        return ScoreSet(self.channels, frame.machines, scores[None], frame.timestamps)
