from __future__ import annotations

import numpy as np

from mlsyskit.federated.fielding.representation import (
    Representation,
    class_pooled_means,
    client_vector,
    pooled_mean_image,
)


def test_pooled_mean_image_by_hand() -> None:
    # two 8x8 images: all ones and all zeros -> mean 0.5 everywhere; then a marked quadrant
    x = np.zeros((2, 64), np.float32)
    x[0] = 1.0
    np.testing.assert_allclose(pooled_mean_image(x, 8), np.full(16, 0.5))
    img = np.zeros((1, 8, 8), np.float32)
    img[0, :2, :2] = 1.0  # top-left 2x2 block of a 4x4 grid over 8x8
    pooled = pooled_mean_image(img.reshape(1, 64), 8)
    assert pooled[0] == 1.0 and pooled[1:].sum() == 0.0


def test_rotation_moves_the_feature_part_only() -> None:
    rng = np.random.default_rng(0)
    img = np.zeros((50, 8, 8), np.float32)
    img[:, :, :2] = rng.random((50, 8, 2))  # mass on the left columns
    y = rng.integers(0, 10, 50)
    flat = img.reshape(50, 64)
    rotated = np.rot90(img, 1, axes=(1, 2)).reshape(50, 64)
    a = client_vector(flat, y, 10, 8, Representation.LABELS_AND_FEATURES)
    b = client_vector(rotated, y, 10, 8, Representation.LABELS_AND_FEATURES)
    assert a.shape == (26,)
    np.testing.assert_allclose(a[:10], b[:10])  # same label histogram
    assert np.abs(a[10:] - b[10:]).sum() > 1.0
    labels_only = client_vector(flat, y, 10, 8, Representation.LABELS)
    np.testing.assert_allclose(labels_only, a[:10])
    lie = np.full(10, 0.1)
    np.testing.assert_allclose(
        client_vector(flat, y, 10, 8, Representation.LABELS, labels_override=lie), lie)


def test_class_pooled_means_by_hand_and_label_swap_moves_them() -> None:
    # 8x8 images: class 1 lights the top-left 2x2 block, class 3 is all ones; 1 of 4 is class 1
    img = np.zeros((4, 8, 8), np.float32)
    img[0, :2, :2] = 1.0
    img[1:] = 1.0
    x, y = img.reshape(4, 64), np.array([1, 3, 3, 3])
    feats = class_pooled_means(x, y, 5, 8).reshape(5, 16)
    assert feats[1, 0] == 0.25 and feats[1, 1:].sum() == 0.0  # share 1/4 x pooled block 1.0
    np.testing.assert_allclose(feats[3], np.full(16, 0.75))
    assert feats[[0, 2, 4]].sum() == 0.0  # absent classes
    # swapping labels 1 <-> 3 keeps the images (P(x)) but moves the class-conditional part
    swapped = np.array([3, 1, 1, 1])
    a = client_vector(x, y, 5, 8, Representation.LABELS_AND_CLASS_FEATURES)
    b = client_vector(x, swapped, 5, 8, Representation.LABELS_AND_CLASS_FEATURES)
    assert a.shape == (5 + 5 * 16,)
    p_x = client_vector(x, y, 5, 8, Representation.LABELS_AND_FEATURES)[5:]
    np.testing.assert_allclose(p_x, client_vector(x, swapped, 5, 8,
                                                  Representation.LABELS_AND_FEATURES)[5:])
    assert np.abs(a[5:] - b[5:]).sum() > 10.0
