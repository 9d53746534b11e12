from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlsyskit.federated.fielding import bench
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
    assert set(table) == {"scheduled", "continuous", "malicious", "iid", "feature"}
    assert len(table["scheduled"]) == 8
