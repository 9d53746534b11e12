"""Where metrics come from: the ``MetricSource`` seam.

A source answers one question: the long table (``timestamp, machine, metric, value[, group]``)
between two times. Three implementations share that contract:

* :class:`TableSource` - a CSV or Parquet file;
* :class:`FrameSource` - an in-memory table (the fake used by tests and the lab replay);
* :class:`PrometheusSource` - a Prometheus server's HTTP API (``/api/v1/query_range``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from mlsyskit.errors import DataError
from mlsyskit.training.minder.errors import MinderError
from mlsyskit.training.minder.frame import read_table, validate_table

log = logging.getLogger(__name__)


class MetricSource(Protocol):
    """Anything that returns the long metric table of a time range."""

    def fetch(self, start_s: float, end_s: float, step_s: float = 1.0) -> pd.DataFrame:
        """Samples with ``start_s <= timestamp <= end_s`` (may raise :class:`DataError`)."""
        ...


class FrameSource:
    """An in-memory long table (validated once)."""

    def __init__(self, table: pd.DataFrame, name: str = "table") -> None:
        self.table = validate_table(table, source=name)

    def fetch(self, start_s: float, end_s: float, step_s: float = 1.0) -> pd.DataFrame:
        ts = self.table["timestamp"]
        out = self.table[(ts >= start_s) & (ts <= end_s)]
        if out.empty:
            raise DataError(f"no samples between {start_s} and {end_s}")
        return out

    @property
    def span_s(self) -> tuple[float, float]:
        return float(self.table["timestamp"].min()), float(self.table["timestamp"].max())


class TableSource(FrameSource):
    """A CSV or Parquet file of the long format."""

    def __init__(self, path: Path) -> None:
        super().__init__(read_table(path), name=str(path))


@dataclass(frozen=True)
class PrometheusQuery:
    """One Minder metric as a PromQL expression; ``machine_label`` names the machine."""

    metric: str
    promql: str


class PrometheusSource:
    """Read metrics from a Prometheus server with ``query_range``.

    Parameters
    ----------
    url
        Base URL, e.g. ``http://127.0.0.1:9090``.
    queries
        Minder metric name -> PromQL expression (one series per machine).
    machine_label
        Label whose value names the machine (default ``instance``).
    group_label
        Optional label with the peer group (e.g. pipeline stage).
    timeout_s
        Per-request timeout.
    transport
        An ``httpx`` transport (tests pass ``httpx.MockTransport``).

    Notes
    -----
    A query that returns no series is skipped with a logged warning (the metric may not be
    exported yet); if none returns anything, :class:`DataError` says the window is empty.
    An unreachable server or an error answer raises :class:`MinderError`.
    """

    def __init__(
        self,
        url: str,
        queries: Mapping[str, str],
        machine_label: str = "instance",
        group_label: str | None = None,
        timeout_s: float = 10.0,
        transport: Any = None,
    ) -> None:
        if not queries:
            raise DataError("PrometheusSource needs at least one query")
        self.url = url.rstrip("/")
        self.queries = dict(queries)
        self.machine_label = machine_label
        self.group_label = group_label
        self.timeout_s = timeout_s
        self.transport = transport

    def _client(self) -> Any:
        import httpx

        kwargs: dict[str, Any] = {"timeout": self.timeout_s}
        if self.transport is not None:
            kwargs["transport"] = self.transport
        return httpx.Client(**kwargs)

    def query_range(self, promql: str, start_s: float, end_s: float,
                    step_s: float) -> list[dict[str, Any]]:
        """The ``result`` list of one ``query_range`` call (a matrix)."""
        import httpx

        params = {"query": promql, "start": f"{start_s:.3f}", "end": f"{end_s:.3f}",
                  "step": f"{step_s:g}"}
        endpoint = f"{self.url}/api/v1/query_range"
        try:
            with self._client() as client:
                response = client.get(endpoint, params=params)
        except httpx.HTTPError as exc:
            raise MinderError(f"Prometheus at {self.url} is unreachable: {exc}") from exc
        try:
            body = response.json()
        except ValueError as exc:
            raise MinderError(f"{endpoint}: answer is not JSON (HTTP {response.status_code})"
                              ) from exc
        if response.status_code != 200 or body.get("status") != "success":
            raise MinderError(
                f"{endpoint}: query {promql!r} failed (HTTP {response.status_code}): "
                f"{body.get('errorType', '')} {body.get('error', '')}".rstrip()
            )
        data = body.get("data", {})
        if data.get("resultType") != "matrix":
            raise MinderError(f"{endpoint}: expected a matrix for {promql!r}, got "
                              f"{data.get('resultType')!r}")
        return list(data.get("result", []))

    def fetch(self, start_s: float, end_s: float, step_s: float = 1.0) -> pd.DataFrame:
        parts = []
        for metric, promql in self.queries.items():
            result = self.query_range(promql, start_s, end_s, step_s)
            if not result:
                log.warning("Prometheus query for %s (%s) returned no series; skipped",
                            metric, promql)
                continue
            for series in result:
                labels = series.get("metric", {})
                if self.machine_label not in labels:
                    raise MinderError(f"series of {metric} lacks the machine label "
                                      f"{self.machine_label!r}: {labels}")
                values = np.asarray(series.get("values", []), dtype=object)
                if len(values) == 0:
                    continue
                frame = pd.DataFrame({
                    "timestamp": values[:, 0].astype(float),
                    "machine": labels[self.machine_label],
                    "metric": metric,
                    "value": pd.to_numeric(values[:, 1], errors="coerce"),
                })
                if self.group_label is not None:
                    frame["group"] = labels.get(self.group_label, "all")
                parts.append(frame)
        if not parts:
            raise DataError(f"no samples between {start_s} and {end_s} from {self.url}")
        table = pd.concat(parts, ignore_index=True)
        return table[np.isfinite(table["value"].to_numpy(dtype=float))]
