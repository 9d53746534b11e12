from __future__ import annotations

import numpy as np
import pytest

from mlsyskit.federated.fielding.bench import speedup
from mlsyskit.federated.fielding.harness import RunRequest, run_strategy
from mlsyskit.federated.fielding.names import ScenarioName, StrategyName
from mlsyskit.federated.fielding.simulator import RunResult


@pytest.fixture(scope="module")
def digits_runs() -> dict[StrategyName, RunResult]:
    out = {}
    for s in (StrategyName.FIELDING, StrategyName.FEDAVG, StrategyName.GLOBAL_EVERY_DRIFT):
        out[s] = run_strategy(RunRequest(ScenarioName.DIGITS, s, seed=0, clients_per_round=8))
    return out


def test_fielding_beats_fedavg_and_reclusters_exactly_at_the_new_group(
    digits_runs: dict[StrategyName, RunResult],
) -> None:
    f, avg = digits_runs[StrategyName.FIELDING], digits_runs[StrategyName.FEDAVG]
    assert f.final_accuracy > avg.final_accuracy + 0.05
    # digits: 30 rounds; the new group appears (with a 30% switch) at round 15: one global
    # re-clustering there, none before or after; the switches are handled by moves
    assert f.recluster_rounds == (15,)
    assert f.num_moves >= 6
    assert avg.num_global_reclusters == 0 and avg.num_clusters.max() == 1


def test_every_drift_baseline_reclusters_on_each_reporting_round(
    digits_runs: dict[StrategyName, RunResult],
) -> None:
    e = digits_runs[StrategyName.GLOBAL_EVERY_DRIFT]
    assert e.recluster_rounds == (15,)  # only one round has drift reports in this scenario


def test_simulator_is_deterministic() -> None:
    req = RunRequest(ScenarioName.DIGITS, StrategyName.FIELDING, seed=2, num_rounds=6,
                     clients_per_round=5)
    a, b = run_strategy(req), run_strategy(req)
    np.testing.assert_array_equal(a.accuracy, b.accuracy)
    np.testing.assert_array_equal(a.time_s, b.time_s)


def _result(acc: list[float], time_s: list[float]) -> RunResult:
    n = len(acc)
    return RunResult("x", np.arange(1, n + 1), np.array(acc), np.array(time_s),
                     np.ones(n, int), 0, 0, 0.0, 0.0)


def test_time_to_target_and_speedup_by_hand() -> None:
    fast = _result([0.5] * 2 + [0.9] * 18, [float(t) for t in range(1, 21)])
    slow = _result([0.5] * 8 + [0.9] * 12, [2.0 * t for t in range(1, 21)])
    # smoothed (5) average first >= 0.855 (0.95 * 0.9) when all 5 are 0.9: index 6 / 12
    assert fast.time_to(0.855) == (7.0, 7.0)
    assert slow.time_to(0.855) == (13.0, 26.0)
    assert speedup(fast, slow) == pytest.approx(26.0 / 7.0)
    never = _result([0.1] * 20, [float(t) for t in range(1, 21)])
    assert speedup(never, slow) == 0.0
