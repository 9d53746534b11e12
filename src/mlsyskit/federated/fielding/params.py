"""Model parameters as lists of NumPy arrays: averaging and mixing."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Params = list[np.ndarray]


def weighted_average(models: Sequence[Params], weights: Sequence[float]) -> Params:
    """Sample-weighted average of models with the same shapes (FedAvg's aggregation)."""
    w = np.asarray(weights, dtype=float)
    w = w / w.sum()
    out = []
    for j in range(len(models[0])):
        acc = np.zeros(models[0][j].shape, dtype=np.float64)
        for wi, m in zip(w, models, strict=True):
            acc += wi * m[j]
        out.append(acc.astype(models[0][j].dtype))
    return out


def mix_models(models: Sequence[Params], mixing: np.ndarray) -> list[Params]:
    """New models, row j of ``mixing`` (K_new, K_old) weighting the old models."""
    out = []
    for row in mixing:
        used = [(float(w), m) for w, m in zip(row, models, strict=True) if w > 0]
        out.append(weighted_average([m for _, m in used], [w for w, _ in used]))
    return out
