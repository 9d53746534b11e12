"""Scorers turn one job's aligned metrics into per-machine dissimilarity scores over time.

Minder and every baseline are scorers behind one interface, so they go through the *same*
threshold calibration, continuity check and evaluation (one mechanism, many policies):

* :class:`MinderScorer` - per-metric LSTM-VAE reconstruction, then peer distance (the paper);
  ``denoise=False`` is the RAW ablation (peer distance on raw windows).
* :class:`IntegratedScorer` - the INT ablation: one LSTM-VAE over all metrics jointly.
* Baselines (:mod:`mlsyskit.training.minder.baselines`): Mahalanobis, per-machine Z-score,
  IsolationForest.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlsyskit.errors import DataError
from mlsyskit.training.minder.errors import NotFittedError
from mlsyskit.training.minder.frame import MetricFrame, minmax_scale
from mlsyskit.training.minder.peers import peer_scores
from mlsyskit.training.minder.vae import WindowDenoiser, sliding_windows

ALL_METRICS_CHANNEL = "all"


@dataclass(frozen=True)
class ScoreSet:
    """Scores of one job: ``scores[channel, machine, point]`` at ``times_s[point]``.

    A channel is a metric (per-metric scorers) or ``"all"`` (scorers over all metrics).
    """

    channels: tuple[str, ...]
    machines: tuple[str, ...]
    scores: np.ndarray
    times_s: np.ndarray

    def channel(self, name: str) -> np.ndarray:
        return self.scores[self.channels.index(name)]


class Scorer(ABC):
    """Fit on normal jobs, then score any job of the same metrics."""

    metrics: Sequence[str] | None
    metrics_: tuple[str, ...]

    @abstractmethod
    def fit(self, frames: Sequence[MetricFrame]) -> Scorer:
        """Learn what normal looks like from ``frames``; returns ``self``."""

    @abstractmethod
    def score(self, frame: MetricFrame) -> ScoreSet:
        """Per-machine scores of ``frame`` (higher = less like its peers)."""

    @property
    @abstractmethod
    def channels(self) -> tuple[str, ...]:
        """Channel names, in the order of :attr:`ScoreSet.channels`."""

    def _check_fitted(self) -> None:
        if not hasattr(self, "metrics_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit() first")

    def _fit_metrics(self, frames: Sequence[MetricFrame]) -> tuple[str, ...]:
        if not frames:
            raise DataError("fit needs at least one job of normal data")
        wanted = tuple(self.metrics) if self.metrics is not None else frames[0].metrics
        for f in frames:
            missing = [m for m in wanted if m not in f.metrics]
            if missing:
                raise DataError(f"training data lacks metric(s) {missing}")
        return wanted

    def _scaled(self, frame: MetricFrame) -> np.ndarray:
        """The frame's fitted metrics, min-max scaled per metric (raises on a missing one)."""
        self._check_fitted()
        return minmax_scale(frame.select(list(self.metrics_)).values)

    def state(self) -> dict[str, Any]:
        """What to save for this scorer (parameters and fitted state)."""
        return {"class": type(self).__name__, "attrs": dict(self.__dict__)}


class MinderScorer(Scorer):
    """Per-metric LSTM-VAE denoising, then peer distance per sliding window.

    Parameters
    ----------
    metrics
        Metrics to model (``None``: every metric of the first training job).
    window
        Sliding-window length in samples (paper: 8).
    denoise
        ``False`` compares raw windows instead of reconstructions (the RAW ablation).
    max_peers
        See :func:`~mlsyskit.training.minder.peers.peer_scores`.
    denoiser_params
        Extra keyword arguments of :class:`WindowDenoiser` (hidden size, epochs, ...).
    random_state
        Seed of every denoiser and of the reference-peer sample.
    """

    def __init__(
        self,
        *,
        metrics: Sequence[str] | None = None,
        window: int = 8,
        denoise: bool = True,
        max_peers: int | None = 128,
        denoiser_params: dict[str, Any] | None = None,
        random_state: int = 0,
    ) -> None:
        self.metrics = metrics
        self.window = window
        self.denoise = denoise
        self.max_peers = max_peers
        self.denoiser_params = denoiser_params
        self.random_state = random_state

    @property
    def channels(self) -> tuple[str, ...]:
        self._check_fitted()
        return self.metrics_

    def fit(self, frames: Sequence[MetricFrame]) -> MinderScorer:
        self.metrics_ = self._fit_metrics(frames)
        self.denoisers_: dict[str, WindowDenoiser] = {}
        if not self.denoise:
            return self
        from tqdm import tqdm

        params = dict(self.denoiser_params or {})
        for k, metric in enumerate(tqdm(self.metrics_, desc="fit LSTM-VAEs", leave=False)):
            windows = np.concatenate([
                sliding_windows(minmax_scale(f.select(list(self.metrics_)).values)[k], self.window)
                .reshape(-1, self.window, 1)
                for f in frames
            ])
            self.denoisers_[metric] = WindowDenoiser(
                window=self.window, random_state=self.random_state + k, **params
            ).fit(windows)
        return self

    def score(self, frame: MetricFrame) -> ScoreSet:
        scaled = self._scaled(frame)
        if scaled.shape[2] < self.window:
            raise DataError(f"need at least {self.window} samples per machine, got "
                            f"{scaled.shape[2]}")
        out = []
        for k, metric in enumerate(self.metrics_):
            windows = sliding_windows(scaled[k], self.window)  # (N, W, w)
            if self.denoise:
                windows = self.denoisers_[metric].transform(windows[..., None])[..., 0]
            out.append(peer_scores(windows, frame.groups, self.max_peers,
                                   random_state=self.random_state))
        times = frame.timestamps[self.window - 1 :]
        return ScoreSet(self.metrics_, frame.machines, np.stack(out), times)


class IntegratedScorer(Scorer):
    """The INT ablation: one LSTM-VAE over all metrics at once, one channel ``"all"``."""

    def __init__(
        self,
        *,
        metrics: Sequence[str] | None = None,
        window: int = 8,
        max_peers: int | None = 128,
        denoiser_params: dict[str, Any] | None = None,
        random_state: int = 0,
    ) -> None:
        self.metrics = metrics
        self.window = window
        self.max_peers = max_peers
        self.denoiser_params = denoiser_params
        self.random_state = random_state

    @property
    def channels(self) -> tuple[str, ...]:
        return (ALL_METRICS_CHANNEL,)

    def _windows(self, scaled: np.ndarray) -> np.ndarray:
        # (M, N, W, w) -> (N, W, w, M)
        return np.moveaxis(sliding_windows(scaled, self.window), 0, -1)

    def fit(self, frames: Sequence[MetricFrame]) -> IntegratedScorer:
        self.metrics_ = self._fit_metrics(frames)
        m = len(self.metrics_)
        windows = np.concatenate([
            self._windows(minmax_scale(f.select(list(self.metrics_)).values)).reshape(
                -1, self.window, m)
            for f in frames
        ])
        self.denoiser_ = WindowDenoiser(
            window=self.window, input_size=m, random_state=self.random_state,
            **dict(self.denoiser_params or {}),
        ).fit(windows)
        return self

    def score(self, frame: MetricFrame) -> ScoreSet:
        scaled = self._scaled(frame)
        recon = self.denoiser_.transform(self._windows(scaled))
        n, w = recon.shape[:2]
        vectors = recon.reshape(n, w, -1)
        scores = peer_scores(vectors, frame.groups, self.max_peers, random_state=self.random_state)
        times = frame.timestamps[self.window - 1 :]
        return ScoreSet(self.channels, frame.machines, scores[None], times)
