from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlsyskit.federated.fielding import bench
from mlsyskit.federated.fielding.simulator import RunResult
from mlsyskit.results import Target


def test_reproduce_end_to_end_on_a_tiny_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench, "QUICK", bench.BenchSize(6, 3, 2, (0,), 1))
    result = bench.reproduce(True, tmp_path)
    issue_metrics = {
        "final_acc_gain_vs_fedavg", "final_acc_gain_vs_ifca", "final_acc_gain_vs_cluster_once",
        "gap_to_oracle", "time_to_target_speedup_vs_ifca", "time_to_target_speedup_vs_fedavg",
        "global_reclusters_fielding", "global_reclusters_every_drift", "malicious_acc_drop",
        "iid_gap_vs_fedavg",
    }
    assert issue_metrics <= set(result.metrics)
    assert set(result.targets) <= set(result.metrics)
    for text in result.targets.values():
        Target(text)  # every target parses
    assert set(result.simulated) <= set(result.metrics)
    for plot in result.plots:
        assert (tmp_path / plot).stat().st_size > 0
    table = json.loads((tmp_path / "fielding_table.json").read_text())
    assert set(table) == {
        "scheduled", "continuous", "malicious", "iid", "feature", "concept",
        "hetero_alpha5", "hetero_alpha50", "hetero_alpha500",
    }
    assert len(table["scheduled"]) == 9 and len(table["concept"]) == 4
    for name in ("post_drift_acc_gain_vs_ifca", "concept_gain_of_class_features",
                 "hetero_alpha5_gain_vs_ifca", "final_acc_gain_vs_ifca_last_identity"):
        assert np.isfinite(result.metrics[name])


def test_post_drift_accuracy_by_hand() -> None:
    run = RunResult("x", np.arange(2, 21, 2), np.linspace(0.1, 1.0, 10), np.arange(10.0),
                    np.ones(10, int), 0, 0, 0.0, 0.0)
    # rounds 2,4,...,20; events at 5 and 15 with a 4-round window: rounds {6, 8} and {16, 18}
    # -> accuracies {0.3, 0.4} and {0.8, 0.9}: mean of 0.35 and 0.85
    assert bench.post_drift_accuracy(run, [5, 15], 4) == pytest.approx(0.6)
    assert bench.drift_rounds(bench.FULL) == [50, 100, 150]
