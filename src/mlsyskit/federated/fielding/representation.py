"""What a client reports: its label histogram, optionally extended with coarse input statistics.

Label histograms are blind to feature drift (e.g. rotated images keep P(y)). The optional
extension (notes 1.2 i) appends the client's mean image average-pooled to a 4x4 grid, scaled by
``feature_weight``: 16 more floats, cheap to send, and they move when P(x) moves. The drift test,
moves and trigger work unchanged on the longer vector.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from mlsyskit.federated.fielding.clustering import label_histogram

POOL_GRID = 4


class Representation(StrEnum):
    LABELS = "labels"
    LABELS_AND_FEATURES = "labels+features"


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
    return np.concatenate([hist, feature_weight * pooled_mean_image(x, image_side)])
