"""Fielding: clustered federated learning that re-clusters selectively when data drifts.

Public API (imported lazily so that ``import mlsyskit.federated.fielding`` stays cheap)::

    from mlsyskit.federated.fielding import FieldingConfig, apply_reports, initial_state
    from mlsyskit.federated.fielding import FieldingStrategy   # Flower strategy (imports flwr)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FieldingConfig": "config",
    "FieldingError": "config",
    "ReclusterRule": "config",
    "CentreRule": "config",
    "ClusterState": "clustering",
    "ClusterUpdate": "clustering",
    "Report": "clustering",
    "apply_reports": "clustering",
    "initial_state": "clustering",
    "global_recluster": "clustering",
    "client_should_report": "clustering",
    "label_histogram": "clustering",
    "tv_distance": "clustering",
    "ScenarioName": "names",
    "StrategyName": "names",
    "RunRequest": "harness",
    "run_strategy": "harness",
    "FieldingStrategy": "flower.strategy",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
    return getattr(module, name)
