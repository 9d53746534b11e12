from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsyskit.federated.fielding.clustering import (
    Report,
    apply_reports,
    client_should_report,
    far_threshold,
    initial_state,
    label_histogram,
    mixing_matrix,
    tv_distance,
)
from mlsyskit.federated.fielding.config import FieldingConfig, FieldingError, ReclusterRule

A = np.array([0.9, 0.05, 0.05])
B = np.array([0.05, 0.9, 0.05])
C = np.array([0.05, 0.05, 0.9])
CFG = FieldingConfig(seed=0)


def _eps(i: int) -> np.ndarray:
    # tiny distinct perturbations so k-means sees distinct points
    return np.array([0.002 * (i % 4), -0.002 * (i % 4), 0.0])


def _two_groups(n: int = 8) -> dict[int, Report]:
    return {i: Report((A if i < n // 2 else B) + _eps(i), 100) for i in range(n)}


def test_tv_distance_and_histogram_by_hand() -> None:
    assert tv_distance(np.array([1.0, 0, 0]), np.array([0, 1.0, 0])) == pytest.approx(1.0)
    assert tv_distance(A, B) == pytest.approx(0.85)
    np.testing.assert_allclose(label_histogram(np.array([0, 0, 2, 2, 2, 1]), 4),
                               [2 / 6, 1 / 6, 3 / 6, 0])


def test_client_side_drift_test() -> None:
    cfg = FieldingConfig(drift_threshold=0.1, min_samples=20)
    assert client_should_report(A, None, 100, cfg)  # first report
    assert not client_should_report(A, None, 19, cfg)  # too few samples
    near = np.array([0.85, 0.10, 0.05])  # TV 0.05
    assert not client_should_report(near, A, 100, cfg)
    far = np.array([0.75, 0.20, 0.05])  # TV 0.15
    assert client_should_report(far, A, 100, cfg)


def test_initial_clustering_finds_the_two_groups_exactly() -> None:
    state, mix = initial_state(_two_groups(), 8, CFG)
    assert state.num_clusters == 2
    a = state.assignment
    assert len(set(a[:4])) == 1 and len(set(a[4:])) == 1 and a[0] != a[4]
    np.testing.assert_allclose(mix, np.ones((2, 1)))  # both start from the single init model
    assert state.num_global == 1


def test_initial_clustering_needs_every_client() -> None:
    reports = _two_groups()
    del reports[3]
    with pytest.raises(FieldingError, match="missing \\[3\\]"):
        initial_state(reports, 8, CFG)


def test_identical_population_is_one_cluster() -> None:
    state, _ = initial_state({i: Report(A, 50) for i in range(6)}, 6, CFG)
    assert state.num_clusters == 1 and set(state.assignment) == {0}


def test_one_drifted_client_moves_without_global_reclustering() -> None:
    state, _ = initial_state(_two_groups(), 8, CFG)
    cluster_b = int(state.assignment[4])
    new, upd = apply_reports(state, {0: Report(B, 100)}, CFG, server_round=1)
    assert upd.moves == ((0, int(state.assignment[0]), cluster_b),)
    assert not upd.reclustered and upd.mixing is None and upd.num_far == 0
    assert new.assignment[0] == cluster_b
    # centre of B now also averages client 0's vector
    members = [B] + [B + _eps(i) for i in range(4, 8)]
    np.testing.assert_allclose(new.centres[cluster_b], np.mean(members, 0))
    assert new.num_global == 1


def test_new_group_triggers_global_reclustering_with_member_weighted_models() -> None:
    state, _ = initial_state(_two_groups(), 8, CFG)
    ca, cb = int(state.assignment[0]), int(state.assignment[4])
    # clients 2, 3 (from A) and 6 (from B) adopt a third distribution C: far from both centres
    reports = {2: Report(C, 100), 3: Report(C + _eps(1), 100), 6: Report(C + _eps(2), 300)}
    assert far_threshold(state, CFG) == pytest.approx(0.15)  # far_min dominates tiny r_ref
    new, upd = apply_reports(state, reports, CFG, server_round=5)
    assert upd.reclustered and upd.num_far == 3
    assert new.num_clusters == 3 and new.num_global == 2
    a = new.assignment
    assert a[0] == a[1] and a[4] == a[5] == a[7] and a[2] == a[3] == a[6]
    assert len({a[0], a[4], a[2]}) == 3
    mix = upd.mixing
    assert mix is not None and mix.shape == (3, 2)
    # the new A and B clusters inherit their old models unchanged
    np.testing.assert_allclose(mix[a[0]], np.eye(2)[ca])
    np.testing.assert_allclose(mix[a[4]], np.eye(2)[cb])
    # the C cluster mixes the old models of its members, weighted by their sample counts; a
    # member's old model is the cluster it was moved to (nearest centre) earlier this round
    moved_to = {i: k for i, _, k in upd.moves} | {i: int(state.assignment[i]) for i in (2, 3, 6)
                                                     if i not in {m[0] for m in upd.moves}}
    expected = np.zeros(2)
    for i, w in ((2, 100), (3, 100), (6, 300)):
        expected[moved_to[i]] += w
    np.testing.assert_allclose(mix[a[2]], expected / expected.sum())


def test_rules_every_drift_never_and_moves_only() -> None:
    reports = {0: Report(B, 100)}
    every = FieldingConfig(recluster=ReclusterRule.EVERY_DRIFT)
    state, _ = initial_state(_two_groups(), 8, every)
    _, upd = apply_reports(state, reports, every, 1)
    assert upd.reclustered and upd.mixing is not None

    never = FieldingConfig(recluster=ReclusterRule.NEVER)
    state, _ = initial_state(_two_groups(), 8, never)
    new, upd = apply_reports(state, {i: Report(C, 100) for i in range(4)}, never, 1)
    assert not upd.reclustered and upd.moves == ()
    np.testing.assert_array_equal(new.assignment, state.assignment)

    only = FieldingConfig(recluster=ReclusterRule.MOVES_ONLY)
    state, _ = initial_state(_two_groups(), 8, only)
    new, upd = apply_reports(state, {i: Report(C, 100) for i in range(4)}, only, 1)
    assert not upd.reclustered and upd.num_far == 4 and new.num_clusters == 2


def test_quarantine_excludes_a_frequent_reporter_from_trigger_and_centres() -> None:
    cfg = FieldingConfig(quarantine_reports=3, quarantine_window=20, trigger_min_clients=1)
    state, _ = initial_state(_two_groups(), 8, cfg)  # round 0 counts as client 0's 1st report
    rng = np.random.default_rng(0)
    globals_seen = []
    for t in (1, 2, 3):
        state, upd = apply_reports(state, {0: Report(rng.dirichlet(np.ones(3)), 100)}, cfg, t)
        globals_seen.append(upd.reclustered)
    assert state.quarantined(cfg)[0] and not state.quarantined(cfg)[1:].any()
    # a far lie from the quarantined client neither triggers nor moves any centre
    before = state.centres.copy()
    state, upd = apply_reports(state, {0: Report(np.array([0.0, 0.0, 1.0]), 100)}, cfg, 4)
    assert upd.num_far == 0 and not upd.reclustered
    np.testing.assert_allclose(state.centres, before)
    # released once its reports leave the window (rounds 0..4 are older than 25 - 20)
    state, _ = apply_reports(state, {}, cfg, 25)
    assert not state.quarantined(cfg)[0]


def test_bad_report_is_rejected_with_the_client_named() -> None:
    state, _ = initial_state(_two_groups(), 8, CFG)
    with pytest.raises(FieldingError, match="client 9"):
        apply_reports(state, {9: Report(A, 10)}, CFG, 1)
    with pytest.raises(FieldingError, match="client 1"):
        apply_reports(state, {1: Report(np.ones(4) / 4, 10)}, CFG, 1)


def test_mixing_matrix_by_hand() -> None:
    old = np.array([0, 0, 1, 1])
    new = np.array([0, 1, 1, 1])
    w = np.array([1.0, 3.0, 2.0, 2.0])
    np.testing.assert_allclose(mixing_matrix(old, new, w, 2, 2), [[1, 0], [3 / 7, 4 / 7]])


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 10_000),
    st.lists(st.tuples(st.integers(0, 11), st.integers(0, 2)), min_size=0, max_size=8),
)
def test_invariants_after_any_reports(seed: int, changes: list[tuple[int, int]]) -> None:
    rng = np.random.default_rng(seed)
    protos = [A, B, C]
    reports0 = {i: Report(protos[i % 3] + rng.normal(0, 0.01, 3), 50) for i in range(12)}
    state, _ = initial_state(reports0, 12, CFG)
    reports = {i: Report(protos[g] + rng.normal(0, 0.01, 3), 50) for i, g in changes}
    new, upd = apply_reports(state, reports, CFG, 1)
    assert new.assignment.min() >= 0 and new.assignment.max() < new.num_clusters
    if upd.mixing is not None:
        assert upd.mixing.shape == (new.num_clusters, state.num_clusters)
        np.testing.assert_allclose(upd.mixing.sum(1), 1.0)
    for i in reports:
        np.testing.assert_allclose(new.vectors[i], reports[i].vector)
    # every client sits at its nearest centre after a global re-clustering or a move
    for i in reports:
        d = np.linalg.norm(new.centres - new.vectors[i], axis=1)
        if upd.reclustered:
            continue
        assert d[new.assignment[i]] == pytest.approx(d.min())
