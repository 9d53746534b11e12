"""Flower's simulation engine (Ray) against the in-process simulator: same accuracy curve."""

from __future__ import annotations

import numpy as np
import pytest

from mlsyskit.federated.fielding.flower.apps import FlowerRun, run_flower_simulation
from mlsyskit.federated.fielding.harness import RunRequest, run_strategy
from mlsyskit.federated.fielding.names import ScenarioName, StrategyName


@pytest.mark.slow
def test_flower_simulation_gives_the_simulator_curve() -> None:
    run = FlowerRun(ScenarioName.DIGITS, StrategyName.FIELDING, num_clients=10, num_rounds=5,
                    clients_per_round=4, seed=0)
    history = run_flower_simulation(run)
    sim = run_strategy(RunRequest(ScenarioName.DIGITS, StrategyName.FIELDING, 0, 10, 5, 4))
    np.testing.assert_allclose([h["accuracy"] for h in history], sim.accuracy, atol=1e-12)
    assert [int(h["round"]) for h in history if h["reclustered"]] == list(sim.recluster_rounds)
