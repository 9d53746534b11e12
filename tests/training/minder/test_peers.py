from __future__ import annotations

import numpy as np

from mlsyskit.training.minder.peers import group_indices, peer_scores


def test_lone_outlier_score_by_hand() -> None:
    v = np.zeros((4, 2, 1), dtype=np.float32)
    v[0] = 3.0
    # m0: mean distance 3; others: (3 + 0 + 0) / 3 = 1; median of [3, 1, 1, 1] = 1
    np.testing.assert_allclose(peer_scores(v, ["g"] * 4), [[2, 2], [0, 0], [0, 0], [0, 0]],
                               atol=1e-5)


def test_groups_are_compared_separately_and_singletons_score_zero() -> None:
    v = np.zeros((5, 1, 2), dtype=np.float32)
    v[2:4] = 10.0  # group b sits far from group a, but is uniform inside
    v[4] = 99.0
    s = peer_scores(v, ["a", "a", "b", "b", "c"])
    np.testing.assert_allclose(s, 0.0, atol=1e-4)
    assert [list(i) for i in group_indices(["a", "b", "a"])] == [[0, 2], [1]]


def test_sampled_peers_equal_exact_when_the_group_is_small_enough() -> None:
    rng = np.random.default_rng(0)
    v = rng.random((20, 5, 8)).astype(np.float32)
    exact = peer_scores(v, ["g"] * 20, max_peers=None)
    np.testing.assert_allclose(peer_scores(v, ["g"] * 20, max_peers=20), exact, atol=1e-5)
    sampled = peer_scores(v, ["g"] * 20, max_peers=10, random_state=1)
    v[3] += 5.0
    outlier = peer_scores(v, ["g"] * 20, max_peers=10, random_state=1)
    assert np.all(outlier.argmax(axis=0) == 3)
    assert sampled.shape == exact.shape
