from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mlsyskit.errors import ConfigError
from mlsyskit.federated.fielding.clock import ClockModel
from mlsyskit.federated.fielding.data import DatasetName, load_digits_dataset
from mlsyskit.federated.fielding.names import ScenarioName
from mlsyskit.federated.fielding.policies import (
    FedDriftLitePolicy,
    IFCAPolicy,
    IFCAServe,
    RoundContext,
)
from mlsyskit.federated.fielding.scenarios import (
    Scenario,
    ScenarioSpec,
    scenario_spec,
    swap_pair,
)


def _scenario(seed: int = 0, **kw: object) -> Scenario:
    return Scenario(scenario_spec(ScenarioName.DIGITS, **kw), load_digits_dataset(), seed)


def test_scenario_is_deterministic_and_follows_the_schedule() -> None:
    a, b = _scenario(3), _scenario(3)
    assert [[s.start_round for s in t] for t in a.timelines] == [
        [s.start_round for s in t] for t in b.timelines
    ]
    np.testing.assert_array_equal(a.client(5, 20).x_train, b.client(5, 20).x_train)
    # digits: 20 clients, 30 rounds; at round 15 30% switch (6) and 20% join the new group (4)
    before, after = a.true_groups(14), a.true_groups(15)
    assert set(before) <= {0, 1, 2, 3}
    assert (after == 4).sum() == 4
    assert 6 <= (before != after).sum() <= 10
    assert a.client(0, 1).y_train.shape == (60,)


def test_liars_leave_the_benign_clients_data_unchanged() -> None:
    clean, attacked = _scenario(1), _scenario(1, malicious_fraction=0.2)
    assert clean.malicious.sum() == 0 and attacked.malicious.sum() == 4
    np.testing.assert_array_equal(clean.true_groups(20), attacked.true_groups(20))
    np.testing.assert_array_equal(clean.client(7, 20).y_train, attacked.client(7, 20).y_train)


def test_iid_clients_have_near_uniform_labels() -> None:
    spec = scenario_spec(ScenarioName.IID, dataset=DatasetName.DIGITS, num_clients=4,
                         train_per_client=1000)
    s = Scenario(spec, load_digits_dataset(), 0)
    hist = np.bincount(s.client(0, 1).y_train, minlength=10) / 1000
    assert np.abs(hist - 0.1).max() < 0.04


def _ctx(loss: dict[tuple[int, int], float], sampled: list[int], k: int) -> RoundContext:
    return RoundContext(1, {}, np.array(sampled), lambda i, m: loss[(i, m)], k)


def test_ifca_picks_the_lowest_loss_model() -> None:
    pol = IFCAPolicy(3)
    pol.start({}, 4)
    loss = {(i, m): float((i + m) % 3) for i in range(4) for m in range(3)}
    d = pol.step(_ctx(loss, [1, 2], 3))
    assert d.assignment.tolist() == [0, 2, 1, 0]  # (1+2)%3 == 0, (2+1)%3 == 0
    assert pol.models_down(3) == 3


def test_feddrift_lite_spawns_a_cluster_for_unexplained_drift() -> None:
    pol = FedDriftLitePolicy(delta=0.5, max_clusters=4)
    pol.start({}, 3)
    pol.step(_ctx({(0, 0): 1.0, (1, 0): 1.0, (2, 0): 1.0}, [0, 1, 2], 1))  # baselines
    d = pol.step(_ctx({(0, 0): 3.0, (1, 0): 1.1, (2, 0): 1.0}, [0, 1, 2], 1))
    assert d.num_clusters == 2 and d.assignment.tolist() == [1, 0, 0]
    assert d.mixing is not None
    np.testing.assert_allclose(d.mixing, [[1.0], [1.0]])


def test_clock_charges_downloads_of_every_model() -> None:
    clock = ClockModel(client_flops=1e9, down_bps=8e6, up_bps=8e6, latency_s=0.0)
    one = clock.client_time_s(1.0, 1e9, 1, 1_000_000)  # 1 s compute + 1 s down + 1 s up
    five = clock.client_time_s(1.0, 1e9, 5, 1_000_000)
    assert one == 3.0 and five == 7.0


def test_concept_drift_swaps_two_dominant_labels_and_keeps_the_inputs() -> None:
    spec = scenario_spec(ScenarioName.CONCEPT, dataset=DatasetName.DIGITS, num_clients=20,
                         num_rounds=10, train_per_client=60, test_per_client=30)
    s = Scenario(spec, load_digits_dataset(), 0)
    assert spec.num_true_groups == 8  # 4 label groups x {plain, swapped}
    before, after = s.true_groups(4), s.true_groups(5)  # the swap happens at 50% = round 5
    assert before.max() < 4 and (after >= 4).sum() == 6  # 30% of 20 clients
    np.testing.assert_array_equal(after % 4, before)  # label groups unchanged
    plain = Scenario(spec, load_digits_dataset(), 0)  # the same draw with the swap undone
    for i in (int(c) for c in np.flatnonzero(after >= 4)):
        last = plain.timelines[i][-1]
        assert last.swapped and not last.rotated and last.start_round == 5
        plain.timelines[i][-1] = replace(last, swapped=False)
        a, b = swap_pair(spec.label_groups[int(before[i])])
        got, ref = s.client(i, 5), plain.client(i, 5)
        np.testing.assert_array_equal(got.x_train, ref.x_train)  # same inputs: P(x) kept
        expected = np.where(ref.y_train == a, b, np.where(ref.y_train == b, a, ref.y_train))
        np.testing.assert_array_equal(got.y_train, expected)
        assert got.true_group == after[i] == ref.true_group + 4


def test_ifca_last_identity_serves_the_cluster_picked_when_last_trained() -> None:
    pol = IFCAPolicy(2, IFCAServe.LAST_IDENTITY)
    pol.start({}, 3)
    loss = {(0, 0): 1.0, (0, 1): 0.0, (1, 0): 0.0, (1, 1): 1.0, (2, 0): 1.0, (2, 1): 0.0}
    pol.step(_ctx(loss, [0], 2))  # client 0 trains and picks model 1
    probe = lambda i, m: loss[(i, m)]  # noqa: E731
    # clients 1 and 2 never trained: they pick once by loss (0 and 1)
    assert pol.serve(3, probe, 2).tolist() == [1, 0, 1]
    flipped = {k: 1.0 - v for k, v in loss.items()}  # all data drifts
    # nobody re-picks until sampled: the served models stay; best-of-K would flip all three
    assert pol.serve(3, lambda i, m: flipped[(i, m)], 2).tolist() == [1, 0, 1]
    pol.step(_ctx(flipped, [2], 2))  # client 2 is sampled and re-picks
    assert pol.serve(3, lambda i, m: flipped[(i, m)], 2).tolist() == [1, 0, 0]
    best = IFCAPolicy(2)
    best.start({}, 3)
    assert best.serve(3, lambda i, m: flipped[(i, m)], 2).tolist() == [0, 1, 0]


@pytest.mark.parametrize(
    ("field", "value"),
    [("swap_at", 1.5), ("swap_at", -0.1), ("swap_fraction", 1.01), ("swap_fraction", -0.5),
     ("rotate_at", 2.0), ("rotate_fraction", -0.1), ("emerge_at", 1.2),
     ("emerge_fraction", 3.0), ("switch_fraction", -1.0), ("continuous_rate", 1.5),
     ("swap_fraction", float("nan"))],
)
def test_scenario_fractions_out_of_range_name_the_field(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=rf"ScenarioSpec\.{field} must be in \[0, 1\]"):
        ScenarioSpec(ScenarioName.CONCEPT, **{field: value})  # type: ignore[arg-type]


def test_scenario_switch_positions_are_checked_one_by_one() -> None:
    with pytest.raises(ConfigError, match=r"switch_at\[1\] must be in \[0, 1\].*got 1\.25"):
        scenario_spec(ScenarioName.SCHEDULED, switch_at=(0.25, 1.25))
    # the bounds themselves are valid: round 1 and the last round
    spec = scenario_spec(ScenarioName.CONCEPT, swap_at=1.0, swap_fraction=0.0)
    assert spec.swap_at == 1.0 and spec.swap_fraction == 0.0
    assert scenario_spec(ScenarioName.CONCEPT, swap_at=0.0, swap_fraction=1.0).swap_at == 0.0


def test_ifca_moves_count_training_changes_only_and_ignore_the_serve_rule() -> None:
    # client 0 trains model 1, then model 0 (one move); client 1 is served model 0 by
    # LAST_IDENTITY's first pick and then trains model 1: a first training pick, not a move
    loss_a = {(0, 0): 1.0, (0, 1): 0.0, (1, 0): 0.0, (1, 1): 1.0}
    loss_b = {(0, 0): 0.0, (0, 1): 1.0, (1, 0): 1.0, (1, 1): 0.0}
    counts = {}
    for rule in IFCAServe:
        pol = IFCAPolicy(2, rule)
        pol.start({}, 2)
        d1 = pol.step(_ctx(loss_a, [0], 2))
        pol.serve(2, lambda i, m: loss_a[(i, m)], 2)  # LAST_IDENTITY picks model 0 for client 1
        d2 = pol.step(_ctx(loss_b, [0, 1], 2))
        d3 = pol.step(_ctx(loss_b, [0, 1], 2))  # same picks again: no move
        counts[rule] = (d1.num_moves, d2.num_moves, d3.num_moves)
        assert d2.assignment.tolist() == [0, 1]
    assert counts[IFCAServe.BEST_OF_K] == counts[IFCAServe.LAST_IDENTITY] == (0, 1, 0)
