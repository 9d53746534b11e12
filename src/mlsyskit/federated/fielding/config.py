"""Fielding's configuration: parsed once, frozen, validated at construction.

Flower hands a ``run_config`` mapping with string keys to the ``ServerApp``; it is turned into a
:class:`FieldingConfig` at that boundary (:meth:`FieldingConfig.from_run_config`) and nothing
deeper looks up string keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import StrEnum

from mlsyskit.errors import ConfigError, MlsyskitError


class FieldingError(MlsyskitError):
    """A Fielding run could not proceed (e.g. a client report that does not fit the state)."""


class ReclusterRule(StrEnum):
    """When the server re-clusters the whole population.

    ``SELECTIVE`` is Fielding: per-client moves every round, a global re-clustering only when
    enough drifted clients are far from every centre. The other rules are the ablations /
    baselines run through the same code: ``MOVES_ONLY`` never re-clusters globally,
    ``EVERY_DRIFT`` re-clusters globally whenever any client reports drift, ``NEVER`` clusters
    once at the start and never changes an assignment ("cluster once").
    """

    SELECTIVE = "selective"
    MOVES_ONLY = "moves_only"
    EVERY_DRIFT = "every_drift"
    NEVER = "never"


class CentreRule(StrEnum):
    """How a cluster centre is computed from its members' label vectors."""

    MEAN = "mean"
    MEDIAN = "median"


@dataclass(frozen=True)
class FieldingConfig:
    """Parameters of drift detection and selective re-clustering (defaults from the notes, 1.2).

    Parameters
    ----------
    drift_threshold
        A client reports a new label vector when its total-variation distance to the last one
        it reported exceeds this (default 0.10).
    min_samples
        A client with fewer local samples never reports (its histogram is too noisy; 20).
    far_factor, far_min
        A drifted client is *far* when its distance to the nearest centre exceeds
        ``max(far_factor * r_ref, far_min)``, ``r_ref`` being the median client-to-centre
        distance right after the last global clustering (2.0 and 0.15).
    trigger_fraction, trigger_min_clients
        Global re-clustering when at least ``max(trigger_min_clients, trigger_fraction * N)``
        non-quarantined drifted clients are far (0.03 and 2).
    max_clusters
        Largest K tried by the silhouette search (8).
    min_silhouette
        Below this best silhouette the population is treated as one cluster, K = 1 (0.25).
    kmeans_restarts, kmeans_iters
        k-means++ restarts per K and Lloyd iterations per restart (5 and 50).
    silhouette_sample
        Silhouette is computed on at most this many clients (1000), O(n^2) otherwise.
    quarantine_reports, quarantine_window
        A client that reported more than ``quarantine_reports`` times in the last
        ``quarantine_window`` rounds is quarantined: it is still served by its nearest cluster
        but neither counts towards the trigger nor shapes the centres (3 and 20).
    quarantine_excludes_training
        Quarantined clients are not asked to train: their cluster came from reports that are
        not trusted, so their updates would land in a model of other data (True; measured
        in docs/systems/fielding.md).
    centre_rule
        Mean or coordinate-wise median of the members' vectors.
    recluster
        The re-clustering rule (see :class:`ReclusterRule`).
    seed
        Seed of every random choice the clustering makes (k-means++ seeding, sampling).
    """

    drift_threshold: float = 0.10
    min_samples: int = 20
    far_factor: float = 2.0
    far_min: float = 0.15
    trigger_fraction: float = 0.03
    trigger_min_clients: int = 2
    max_clusters: int = 8
    min_silhouette: float = 0.25
    kmeans_restarts: int = 5
    kmeans_iters: int = 50
    silhouette_sample: int = 1000
    quarantine_reports: int = 3
    quarantine_window: int = 20
    quarantine_excludes_training: bool = True
    centre_rule: CentreRule = CentreRule.MEAN
    recluster: ReclusterRule = ReclusterRule.SELECTIVE
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            ("drift_threshold", 0.0 <= self.drift_threshold <= 1.0, "in [0, 1]"),
            ("min_samples", self.min_samples >= 0, ">= 0"),
            ("far_factor", self.far_factor > 0, "> 0"),
            ("far_min", self.far_min >= 0, ">= 0"),
            ("trigger_fraction", 0.0 <= self.trigger_fraction <= 1.0, "in [0, 1]"),
            ("trigger_min_clients", self.trigger_min_clients >= 1, ">= 1"),
            ("max_clusters", self.max_clusters >= 1, ">= 1"),
            ("min_silhouette", -1.0 <= self.min_silhouette <= 1.0, "in [-1, 1]"),
            ("kmeans_restarts", self.kmeans_restarts >= 1, ">= 1"),
            ("kmeans_iters", self.kmeans_iters >= 1, ">= 1"),
            ("silhouette_sample", self.silhouette_sample >= 2, ">= 2"),
            ("quarantine_reports", self.quarantine_reports >= 1, ">= 1"),
            ("quarantine_window", self.quarantine_window >= 1, ">= 1"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(
                    f"FieldingConfig.{name} must be {expected}; got {getattr(self, name)!r}"
                )

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, object]) -> FieldingConfig:
        """Build from a Flower ``run_config`` (keys like ``drift-threshold``; unknown keys ignored
        unless they start with ``fielding-``, which must name a field)."""
        by_key = {f.name.replace("_", "-"): f for f in fields(cls)}
        values: dict[str, object] = {}
        for raw_key, value in run_config.items():
            key = raw_key.removeprefix("fielding-")
            if key not in by_key:
                if raw_key.startswith("fielding-"):
                    raise ConfigError(
                        f"unknown Fielding run_config key {raw_key!r}; known: "
                        + ", ".join(sorted("fielding-" + k for k in by_key))
                    )
                continue
            field = by_key[key]
            values[field.name] = _coerce(field.name, field.type, value)
        return cls(**values)  # type: ignore[arg-type]


def _coerce(name: str, type_name: object, value: object) -> object:
    text = str(type_name)
    try:
        if "ReclusterRule" in text:
            return ReclusterRule(str(value))
        if "CentreRule" in text:
            return CentreRule(str(value))
        if text == "bool":
            if str(value).lower() in ("true", "1"):
                return True
            if str(value).lower() in ("false", "0"):
                return False
            raise ValueError(value)
        if text == "int":
            if isinstance(value, bool) or float(str(value)) != int(float(str(value))):
                raise ValueError(value)
            return int(float(str(value)))
        if text == "float":
            return float(str(value))
    except ValueError as exc:
        raise ConfigError(f"run_config value for {name!r} is invalid: {value!r}") from exc
    return value
