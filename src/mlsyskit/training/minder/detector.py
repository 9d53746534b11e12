"""The Minder estimator: scorer + metric priority + calibrated thresholds + continuity.

Typical use::

    minder = Minder(random_state=0).fit(train_frames, train_faults)
    minder.calibrate(calibration_frames, calibration_faults)
    alert = minder.detect(frame)            # an Alert or None, one detection pass

Threshold calibration (how the similarity threshold is set): for each channel, ``base`` is the
``threshold_quantile`` quantile (default 0.99) of the per-point top machine score over the
*fault-free* calibration jobs, i.e. how far the most unusual healthy machine usually sits from
its peers. The threshold is ``scale x base``; ``calibrate`` picks ``scale`` from a fixed grid by
the F1 it gives on the labelled calibration jobs (largest scale on ties). Without calibration,
``fit`` sets ``base`` from the training jobs and uses ``default_scale``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlsyskit.errors import DataError
from mlsyskit.training.minder.alerts import Alert
from mlsyskit.training.minder.continuity import detect_pass
from mlsyskit.training.minder.errors import NotFittedError
from mlsyskit.training.minder.evaluate import EvaluationReport, match_job, summarise
from mlsyskit.training.minder.frame import MetricFrame
from mlsyskit.training.minder.generator import FaultLabel
from mlsyskit.training.minder.priority import learn_priority
from mlsyskit.training.minder.scorers import MinderScorer, Scorer, ScoreSet

SCALE_GRID: tuple[float, ...] = (
    0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0,
)


def base_levels(score_sets: Sequence[ScoreSet], quantile: float) -> dict[str, float]:
    """Per channel: the ``quantile`` of the top machine score at each point, pooled."""
    if not score_sets:
        raise DataError("threshold calibration needs at least one fault-free job")
    out = {}
    for channel in score_sets[0].channels:
        tops = np.concatenate([s.channel(channel).max(axis=0) for s in score_sets])
        out[channel] = max(float(np.quantile(tops, quantile)), 1e-6)
    return out


def evaluate_scores(
    score_sets: Sequence[ScoreSet],
    faults: Sequence[Sequence[FaultLabel]],
    thresholds: dict[str, float],
    order: Sequence[str],
    continuity_s: float,
    grace_s: float = 60.0,
) -> tuple[EvaluationReport, list[Alert | None]]:
    """Run one detection pass per job on precomputed scores and match the alerts."""
    alerts = [detect_pass(s, thresholds, order, continuity_s) for s in score_sets]
    outcomes = [
        match_job([a] if a is not None else [], f, grace_s)
        for a, f in zip(alerts, faults, strict=True)
    ]
    return summarise(outcomes), alerts


def choose_scale(
    score_sets: Sequence[ScoreSet],
    faults: Sequence[Sequence[FaultLabel]],
    base: dict[str, float],
    order: Sequence[str],
    continuity_s: float,
    scales: Sequence[float] = SCALE_GRID,
) -> tuple[float, EvaluationReport]:
    """The scale of ``base`` with the best F1 on labelled jobs (largest on ties)."""
    best: tuple[float, float, EvaluationReport] | None = None
    for scale in scales:
        thresholds = {k: scale * v for k, v in base.items()}
        report, _ = evaluate_scores(score_sets, faults, thresholds, order, continuity_s)
        if best is None or report.overall.f1 >= best[1]:
            best = (scale, report.overall.f1, report)
    assert best is not None
    return best[0], best[2]


class Minder:
    """Faulty-machine detector of one training job (scikit-learn-style estimator).

    Parameters
    ----------
    scorer
        How machines are scored; default :class:`MinderScorer` (per-metric LSTM-VAE).
    num_metrics
        How many metrics, in priority order, are tried (paper: 7).
    continuity_s
        How long one machine must stay the candidate (paper: 240 s).
    threshold_quantile, default_scale
        See the module docstring.
    random_state
        Seed of the decision tree (the scorer has its own).
    """

    def __init__(
        self,
        *,
        scorer: Scorer | None = None,
        num_metrics: int = 7,
        continuity_s: float = 240.0,
        threshold_quantile: float = 0.99,
        default_scale: float = 2.0,
        random_state: int = 0,
    ) -> None:
        self.scorer = scorer
        self.num_metrics = num_metrics
        self.continuity_s = continuity_s
        self.threshold_quantile = threshold_quantile
        self.default_scale = default_scale
        self.random_state = random_state

    def fit(
        self,
        frames: Sequence[MetricFrame],
        faults: Sequence[Sequence[FaultLabel]] | None = None,
    ) -> Minder:
        """Learn the priority (when faults are labelled), fit the scorer on normal jobs.

        Jobs with a labelled fault are used for the priority tree only; the denoisers learn from
        the fault-free ones (all jobs when nothing is labelled: faults are rare in practice).
        """
        if not frames:
            raise DataError("fit needs at least one job")
        labels = list(faults) if faults is not None else [[] for _ in frames]
        if len(labels) != len(frames):
            raise DataError(f"got {len(frames)} jobs but {len(labels)} fault lists")
        order, self.importance_ = learn_priority(frames, labels, random_state=self.random_state)
        self.priority_ = order
        scorer = self.scorer if self.scorer is not None else MinderScorer(
            random_state=self.random_state)
        if scorer.metrics is None:
            scorer.metrics = order[: self.num_metrics]
        normal = [f for f, lab in zip(frames, labels, strict=True) if not lab] or list(frames)
        self.scorer_ = scorer.fit(normal)
        channels = self.scorer_.channels
        self.order_ = [m for m in order if m in channels] + [c for c in channels if c not in order]
        self.base_ = base_levels([self.scorer_.score(f) for f in normal],
                                 self.threshold_quantile)
        self.scale_ = self.default_scale
        return self

    @property
    def thresholds_(self) -> dict[str, float]:
        self._check()
        return {k: self.scale_ * v for k, v in self.base_.items()}

    def _check(self) -> None:
        if not hasattr(self, "scorer_"):
            raise NotFittedError("this Minder is not fitted yet; call fit() or Minder.load()")

    def calibrate(
        self,
        frames: Sequence[MetricFrame],
        faults: Sequence[Sequence[FaultLabel]],
        score_sets: Sequence[ScoreSet] | None = None,
    ) -> EvaluationReport:
        """Set the thresholds on a labelled calibration set (see module docstring)."""
        self._check()
        sets = list(score_sets) if score_sets is not None else [self.score(f) for f in frames]
        free = [s for s, lab in zip(sets, faults, strict=True) if not lab]
        self.base_ = base_levels(free, self.threshold_quantile)
        self.scale_, report = choose_scale(sets, faults, self.base_, self.order_,
                                           self.continuity_s)
        return report

    def score(self, frame: MetricFrame) -> ScoreSet:
        self._check()
        return self.scorer_.score(frame)

    def detect(self, frame: MetricFrame, job: str = "") -> Alert | None:
        """One detection pass over ``frame``: the first alert in priority order, or ``None``."""
        return detect_pass(self.score(frame), self.thresholds_, self.order_, self.continuity_s,
                           job=job)

    def save(self, path: Path) -> None:
        """Pickle-free save: parameters, priority, thresholds and every denoiser's weights."""
        import torch

        self._check()
        if not isinstance(self.scorer_, MinderScorer):
            raise DataError("only the MinderScorer-based detector can be saved")
        s = self.scorer_
        state: dict[str, Any] = {
            "params": {k: getattr(self, k) for k in (
                "num_metrics", "continuity_s", "threshold_quantile", "default_scale",
                "random_state")},
            "scorer": {"metrics": list(s.metrics_), "window": s.window, "denoise": s.denoise,
                       "max_peers": s.max_peers, "random_state": s.random_state},
            "denoisers": {k: d.state() for k, d in s.denoisers_.items()},
            "priority": self.priority_, "importance": self.importance_, "order": self.order_,
            "base": self.base_, "scale": self.scale_,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, path)

    @classmethod
    def load(cls, path: Path) -> Minder:
        import torch

        from mlsyskit.training.minder.vae import WindowDenoiser

        if not path.exists():
            raise DataError(f"{path}: no such model file")
        try:
            state = torch.load(path, weights_only=True)
        except Exception as exc:
            raise DataError(f"{path}: not a Minder model: {exc}") from exc
        model = cls(**state["params"])
        sc = state["scorer"]
        scorer = MinderScorer(metrics=sc["metrics"], window=sc["window"], denoise=sc["denoise"],
                              max_peers=sc["max_peers"], random_state=sc["random_state"])
        scorer.metrics_ = tuple(sc["metrics"])
        scorer.denoisers_ = {k: WindowDenoiser.from_state(v) for k, v in state["denoisers"].items()}
        model.scorer = scorer
        model.scorer_ = scorer
        model.priority_ = list(state["priority"])
        model.importance_ = dict(state["importance"])
        model.order_ = list(state["order"])
        model.base_ = dict(state["base"])
        model.scale_ = float(state["scale"])
        return model
