from __future__ import annotations

import pytest

import mlsyskit.federated.fielding as fielding


def test_public_names_are_pinned_and_importable() -> None:
    assert fielding.__all__ == sorted([
        "CentreRule", "ClusterState", "ClusterUpdate", "FieldingConfig", "FieldingError",
        "FieldingStrategy", "ReclusterRule", "Report", "RunRequest", "ScenarioName",
        "StrategyName", "apply_reports", "client_should_report", "global_recluster",
        "initial_state", "label_histogram", "run_strategy", "tv_distance",
    ])
    for name in fielding.__all__:
        assert getattr(fielding, name) is not None
    with pytest.raises(AttributeError, match="nope"):
        fielding.nope  # noqa: B018
