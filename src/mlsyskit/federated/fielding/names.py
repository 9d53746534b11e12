"""The names users pick from (scenarios and strategies), kept free of heavy imports so the CLI
can build its ``--help`` without loading NumPy or torch."""

from __future__ import annotations

from enum import StrEnum


class ScenarioName(StrEnum):
    """The named scenarios (parameters chosen once, documented in docs/systems/fielding.md)."""

    SCHEDULED = "scheduled"
    CONTINUOUS = "continuous"
    EMERGENT = "emergent"
    FEATURE = "feature"
    CONCEPT = "concept"
    IID = "iid"
    DIGITS = "digits"


class StrategyName(StrEnum):
    """Strategies the harness runs (``mlsyskit fielding run --strategy``)."""

    FIELDING = "fielding"
    FEDAVG = "fedavg"
    IFCA = "ifca"
    IFCA_LAST_IDENTITY = "ifca_last_identity"
    CLUSTER_ONCE = "cluster_once"
    MOVES_ONLY = "moves_only"
    GLOBAL_EVERY_DRIFT = "global_every_drift"
    FEDDRIFT = "feddrift"
    ORACLE = "oracle"
