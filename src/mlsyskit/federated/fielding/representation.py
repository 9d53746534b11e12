"""What a client reports: its label histogram, optionally extended with coarse input statistics.

Label histograms are blind to feature drift (e.g. rotated images keep P(y)). The optional
extension (notes 1.2 i) appends the client's mean image average-pooled to a 4x4 grid, scaled by
``feature_weight``: 16 more floats, cheap to send, and they move when P(x) moves. Both are blind
to concept drift (swapped labels keep P(y) and P(x)); the class-conditional extension appends,
per class c, ``P(y=c)`` times the 4x4 pooled mean image of the class-c inputs (the joint first
moment E[pool(x) 1{y=c}], 16 C floats): it moves when P(x|y) moves, hence under label swaps.
The drift test, moves and trigger work unchanged on the longer vectors.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from mlsyskit.federated.fielding.clustering import label_histogram

POOL_GRID = 4


class Representation(StrEnum):
    LABELS = "labels"
    LABELS_AND_FEATURES = "labels+features"
    LABELS_AND_CLASS_FEATURES = "labels+class-features"


def pooled_mean_image(x: np.ndarray, image_side: int, grid: int = POOL_GRID) -> np.ndarray:
    """Mean image of a client's inputs, average-pooled to ``grid x grid`` (flattened)."""
    if len(x) == 0:
        return np.zeros(grid * grid)
    mean = x.reshape(len(x), image_side, image_side).mean(0)
    block = image_side // grid
    cropped = mean[: block * grid, : block * grid]
    return np.asarray(cropped.reshape(grid, block, grid, block).mean((1, 3)).ravel(), float)


def client_vector(
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    image_side: int,
    kind: Representation,
    feature_weight: float = 1.0,
    labels_override: np.ndarray | None = None,
) -> np.ndarray:
    """The vector a client reports. ``labels_override`` replaces the label part (what a lying
    client does)."""
    hist = label_histogram(y, num_classes) if labels_override is None else labels_override
    if kind is Representation.LABELS:
        return hist
    if kind is Representation.LABELS_AND_FEATURES:
        return np.concatenate([hist, feature_weight * pooled_mean_image(x, image_side)])
    per_class = class_pooled_means(x, y, num_classes, image_side)
    return np.concatenate([hist, feature_weight * per_class])


def class_pooled_means(
    x: np.ndarray, y: np.ndarray, num_classes: int, image_side: int
) -> np.ndarray:
    """(C * 16,) per class c: the share of class c times the pooled mean image of its inputs
    (zeros for an absent class, so rare classes add little noise)."""
    grid = POOL_GRID * POOL_GRID
    out = np.zeros((num_classes, grid))
    labels = np.asarray(y, dtype=int)
    for c in np.unique(labels):
        mask = labels == c
        out[c] = mask.mean() * pooled_mean_image(x[mask], image_side)
    return out.ravel()
