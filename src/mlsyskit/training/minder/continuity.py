"""Similarity threshold + continuity: when a candidate machine becomes an alert.

At every score point the candidate is the machine with the highest score; it counts only if its
score is at or above the channel's threshold. An alert is raised when the *same* machine stays
the candidate, point after point, for ``continuity_s`` seconds (paper: 4 minutes). Any point
where the candidate changes or falls below the threshold restarts the count. With
``continuity_s = 0`` the first point above the threshold alerts (the no-continuity ablation).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from mlsyskit.training.minder.alerts import Alert
from mlsyskit.training.minder.scorers import ScoreSet


def first_alert(
    scores: np.ndarray,
    times_s: np.ndarray,
    machines: Sequence[str],
    threshold: float,
    continuity_s: float,
    metric: str = "",
    job: str = "",
) -> Alert | None:
    """The first continuous run of one candidate lasting ``continuity_s``, as an :class:`Alert`.

    Parameters
    ----------
    scores
        ``(num_machines, num_points)``.
    times_s
        Timestamp of every point, increasing, regularly spaced.
    threshold
        Minimum score of a candidate.
    continuity_s
        How long the same machine must stay the candidate.
    """
    if scores.shape[1] == 0:
        return None
    candidate = np.argmax(scores, axis=0)
    best = scores[candidate, np.arange(scores.shape[1])]
    key = np.where(best >= threshold, candidate, -1)
    step_s = float(times_s[1] - times_s[0]) if len(times_s) > 1 else 1.0
    need = math.ceil(continuity_s / step_s - 1e-9)  # points after the run's first one
    change = np.flatnonzero(np.diff(key)) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [len(key)]))
    for a, b in zip(starts, ends, strict=True):
        if key[a] < 0 or b - a <= need:
            continue
        at = a + need
        return Alert(
            machine=str(machines[int(key[a])]),
            metric=metric,
            first_seen=float(times_s[a]),
            alert_time=float(times_s[at]),
            score=float(best[at]),
            job=job,
        )
    return None


def detect_pass(
    score_set: ScoreSet,
    thresholds: Mapping[str, float],
    order: Sequence[str],
    continuity_s: float,
    job: str = "",
) -> Alert | None:
    """One detection pass: try channels in priority ``order``, return the first alert.

    Channels in ``order`` that the score set lacks are skipped (the scorer decides what exists).
    """
    for channel in order:
        if channel not in score_set.channels:
            continue
        alert = first_alert(
            score_set.channel(channel), score_set.times_s, score_set.machines,
            thresholds[channel], continuity_s, metric=channel, job=job,
        )
        if alert is not None:
            return alert
    return None
