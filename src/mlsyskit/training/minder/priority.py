"""Metric priority learned by a decision tree (paper section 1.5 of the notes).

For every labelled stretch of a job (``chunk_s`` seconds) and every metric, each machine's mean
in the stretch is turned into a Z-score against its peer group, and the largest absolute Z-score
over machines is that metric's feature. A decision tree separates faulty from normal stretches;
metrics that the tree uses closer to the root are tried first. Metrics the tree never uses keep
the paper's order after them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlsyskit.training.minder.frame import MetricFrame
from mlsyskit.training.minder.generator import FaultLabel
from mlsyskit.training.minder.peers import group_indices

PAPER_ORDER: tuple[str, ...] = (
    "pfc_tx_rate", "cpu_usage", "gpu_duty_cycle", "gpu_power", "tensor_activity", "nvlink_bw",
    "nic_throughput", "memory_used", "step_time",
)
"""The paper's top-7 (graphics-engine activity has no counterpart here) and then the rest."""


def max_peer_z(frame: MetricFrame, chunk_s: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
    """Features ``(num_chunks, num_metrics)`` and each chunk's start time."""
    per = max(1, round(chunk_s / frame.step_s))
    num_chunks = frame.num_steps // per
    if num_chunks == 0:
        return np.zeros((0, len(frame.metrics))), np.zeros(0)
    vals = frame.values[:, :, : num_chunks * per].reshape(
        len(frame.metrics), len(frame.machines), num_chunks, per).mean(axis=3)
    feats = np.zeros((num_chunks, len(frame.metrics)))
    for idx in group_indices(frame.groups):
        if len(idx) < 2:
            continue
        sub = vals[:, idx]
        std = sub.std(axis=1, keepdims=True)
        z = np.abs(sub - sub.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)
        feats = np.maximum(feats, z.max(axis=1).T)
    return feats, frame.t0_s + frame.step_s * per * np.arange(num_chunks)


def learn_priority(
    frames: Sequence[MetricFrame],
    faults: Sequence[Sequence[FaultLabel]],
    chunk_s: float = 60.0,
    max_depth: int = 4,
    random_state: int = 0,
) -> tuple[list[str], dict[str, float]]:
    """Fit the tree; return the metric order and each metric's feature importance.

    A stretch is labelled faulty when it lies inside a fault's ``[start, end]``; stretches that
    straddle a fault's start are left out (their label is ambiguous).
    """
    from sklearn.tree import DecisionTreeClassifier

    metrics = list(frames[0].metrics)
    xs, ys = [], []
    for frame, labels in zip(frames, faults, strict=True):
        feats, starts = max_peer_z(frame.select(metrics), chunk_s)
        for row, a in zip(feats, starts, strict=True):
            b = a + chunk_s
            inside = any(f.start_s <= a and b <= f.end_s + 1 for f in labels)
            straddle = any(a < f.start_s < b for f in labels)
            if straddle:
                continue
            xs.append(row)
            ys.append(int(inside))
    x, y = np.asarray(xs), np.asarray(ys)
    if len(set(ys)) < 2:
        return _fallback(metrics), dict.fromkeys(metrics, 0.0)
    # leaves of at least 2% of the stretches keep the tree from splitting on noise
    tree = DecisionTreeClassifier(max_depth=max_depth, class_weight="balanced",
                                  min_samples_leaf=max(5, len(y) // 50),
                                  random_state=random_state).fit(x, y)
    depth = _first_depth(tree, len(metrics))
    importance = dict(zip(metrics, tree.feature_importances_.tolist(), strict=True))
    used = [m for m in metrics if depth[metrics.index(m)] < np.inf]
    used.sort(key=lambda m: (depth[metrics.index(m)], -importance[m]))
    rest = [m for m in _fallback(metrics) if m not in used]
    return used + rest, importance


def _first_depth(tree: object, num_features: int) -> list[float]:
    t = tree.tree_  # type: ignore[attr-defined]
    depth = [np.inf] * num_features
    stack = [(0, 0)]
    while stack:
        node, d = stack.pop()
        if t.children_left[node] == -1:
            continue
        f = int(t.feature[node])
        depth[f] = min(depth[f], d)
        stack.append((t.children_left[node], d + 1))
        stack.append((t.children_right[node], d + 1))
    return depth


def _fallback(metrics: Sequence[str]) -> list[str]:
    known = [m for m in PAPER_ORDER if m in metrics]
    return known + [m for m in metrics if m not in known]
