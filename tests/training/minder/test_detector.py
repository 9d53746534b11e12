from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlsyskit.training.minder.baselines import (
    IsolationForestScorer,
    MahalanobisScorer,
    ZScoreScorer,
)
from mlsyskit.training.minder.detector import Minder, base_levels
from mlsyskit.training.minder.errors import NotFittedError
from mlsyskit.training.minder.frame import MetricFrame
from mlsyskit.training.minder.generator import FaultLabel
from mlsyskit.training.minder.scorers import IntegratedScorer, MinderScorer

FAST = {"epochs": 2, "max_windows": 600, "min_steps": 40}


def _job(seed: int, outlier: int | None = None, start: int = 100, n: int = 8,
         steps: int = 400) -> MetricFrame:
    """Two metrics of a synchronous job; ``outlier`` drifts far from its peers from ``start``."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    rhythm = np.sin(2 * np.pi * t / 7.0)
    values = np.stack([
        50 + 10 * rhythm + rng.normal(0, 1.0, (n, steps)),
        5 + 1 * rhythm + rng.normal(0, 0.1, (n, steps)),
    ]).astype(np.float32)
    if outlier is not None:
        values[0, outlier, start:] += 40.0
    return MetricFrame(tuple(f"m{i}" for i in range(n)), ("cpu", "nic"), ("g",) * n, 0.0, 1.0,
                       values)


@pytest.fixture(scope="module")
def fitted() -> Minder:
    scorer = MinderScorer(denoiser_params=FAST, random_state=0)
    return Minder(scorer=scorer, continuity_s=60, random_state=0).fit([_job(1), _job(2)])


def test_names_the_drifting_machine_after_the_continuity(fitted: Minder) -> None:
    alert = fitted.detect(_job(3, outlier=5, start=100))
    assert alert is not None
    assert alert.machine == "m5" and alert.metric == "cpu"
    assert 100 <= alert.first_seen <= 115
    assert alert.alert_time - alert.first_seen == 60
    assert fitted.detect(_job(4)) is None


def test_estimator_conventions() -> None:
    scorer = MinderScorer(denoiser_params=FAST, random_state=3)
    minder = Minder(scorer=scorer, continuity_s=12.0, random_state=3)
    assert (minder.continuity_s, minder.random_state, minder.scorer) == (12.0, 3, scorer)
    assert not hasattr(minder, "order_")
    with pytest.raises(NotFittedError, match="call fit"):
        minder.detect(_job(0))
    assert minder.fit([_job(1)]) is minder
    with pytest.raises(NotFittedError):
        MinderScorer().score(_job(0))


def test_calibrate_picks_a_scale_from_labelled_jobs(fitted: Minder) -> None:
    jobs = [_job(10, outlier=2), _job(11, outlier=6), _job(12), _job(13)]
    labels = [[FaultLabel("m2", "x", 100, 399)], [FaultLabel("m6", "x", 100, 399)], [], []]
    report = fitted.calibrate(jobs, labels)
    assert report.overall.f1 == 1.0
    assert fitted.thresholds_["cpu"] == pytest.approx(fitted.scale_ * fitted.base_["cpu"])


def test_save_and_load_give_the_same_scores(fitted: Minder, tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    fitted.save(path)
    loaded = Minder.load(path)
    job = _job(3, outlier=5)
    np.testing.assert_allclose(loaded.score(job).scores, fitted.score(job).scores, atol=1e-6)
    assert loaded.order_ == fitted.order_ and loaded.thresholds_ == fitted.thresholds_


def test_base_levels_is_the_quantile_of_the_top_score(fitted: Minder) -> None:
    s = fitted.score(_job(4))
    top = s.channel("cpu").max(axis=0)
    assert base_levels([s], 0.5)["cpu"] == pytest.approx(float(np.quantile(top, 0.5)))


@pytest.mark.parametrize("scorer", [
    MahalanobisScorer(random_state=0), ZScoreScorer(), IsolationForestScorer(random_state=0),
    MinderScorer(denoise=False), IntegratedScorer(denoiser_params=FAST),
])
def test_every_scorer_ranks_the_outlier_first(scorer: object) -> None:
    minder = Minder(scorer=scorer, continuity_s=30).fit([_job(1), _job(2)])  # type: ignore[arg-type]
    # the drift covers the last quarter, so even a score against the machine's own history
    # (Z-score) sees it as unusual
    s = minder.score(_job(3, outlier=4, start=300))
    top = s.scores[0].argmax(axis=0)
    late = s.times_s > 310
    assert np.mean(top[late] == 4) > 0.9
