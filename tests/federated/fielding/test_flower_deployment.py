"""A real Flower deployment on loopback: SuperLink + SuperNodes as processes, `flwr run`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlsyskit.federated.fielding.flower.deployment import (
    LoopbackDeployment,
    group_alive,
    write_app,
)
from mlsyskit.federated.fielding.harness import RunRequest, run_strategy
from mlsyskit.federated.fielding.names import ScenarioName, StrategyName


@pytest.mark.slow
def test_superlink_and_supernodes_run_fielding_like_the_simulator(tmp_path: Path) -> None:
    history_file = tmp_path / "history.json"
    app = write_app(tmp_path / "app", {
        "scenario": "digits", "num-clients": 3, "num-server-rounds": 2,
        "clients-per-round": 2, "seed": 0, "history-file": str(history_file),
    })
    deployment = LoopbackDeployment(tmp_path / "run", num_nodes=3)
    try:
        with deployment:
            groups = deployment.process_groups
            assert len(groups) == 4  # one SuperLink, three SuperNodes
            deployment.run_app(app, timeout_s=420)
    finally:
        deployment.stop()
    assert not any(group_alive(g) for g in groups)  # every process it started is gone
    history = json.loads(history_file.read_text())
    sim = run_strategy(RunRequest(ScenarioName.DIGITS, StrategyName.FIELDING, 0, 3, 2, 2))
    np.testing.assert_allclose([h["accuracy"] for h in history], sim.accuracy, atol=1e-12)
