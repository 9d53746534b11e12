"""Metric tables in, one aligned array out: the paper's time alignment and min-max scaling.

Monitoring data arrives as a long table (``timestamp, machine, metric, value[, group]``) with
per-machine clock skew, gaps and machines that stop reporting. :func:`align` puts every series on
one grid of ``step_s`` seconds and fills each grid point from the *nearest* sample in time (the
paper's rule), so a dead machine's series goes flat at its last value instead of vanishing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlsyskit.errors import DataError

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("timestamp", "machine", "metric", "value")


@dataclass(frozen=True)
class MetricFrame:
    """Aligned metrics of one job: ``values[metric, machine, time]`` on a regular grid.

    Parameters
    ----------
    machines
        Machine names, in row order.
    metrics
        Metric names, in the first axis' order.
    groups
        Peer group of every machine (machines are compared only inside their group).
    t0_s
        Timestamp of the first grid point, seconds.
    step_s
        Grid spacing, seconds.
    values
        Raw (unscaled) values, float32, shape ``(num_metrics, num_machines, num_steps)``.
    """

    machines: tuple[str, ...]
    metrics: tuple[str, ...]
    groups: tuple[str, ...]
    t0_s: float
    step_s: float
    values: np.ndarray

    def __post_init__(self) -> None:
        shape = (len(self.metrics), len(self.machines))
        if self.values.ndim != 3 or self.values.shape[:2] != shape:
            raise DataError(
                f"values has shape {self.values.shape}; expected {shape} + (num_steps,)"
            )
        if len(self.groups) != len(self.machines):
            raise DataError("groups must name one group per machine")

    @property
    def num_steps(self) -> int:
        return int(self.values.shape[2])

    @property
    def timestamps(self) -> np.ndarray:
        return self.t0_s + self.step_s * np.arange(self.num_steps)

    def metric(self, name: str) -> np.ndarray:
        """The ``(num_machines, num_steps)`` array of one metric; a clear error if absent."""
        if name not in self.metrics:
            raise DataError(f"metric {name!r} is not in the data; present: {list(self.metrics)}")
        return self.values[self.metrics.index(name)]

    def select(self, metrics: list[str]) -> MetricFrame:
        """A frame with only ``metrics`` (in that order)."""
        idx = [self.metrics.index(m) for m in metrics if m in self.metrics]
        missing = [m for m in metrics if m not in self.metrics]
        if missing:
            raise DataError(f"metrics {missing} are not in the data; present: {list(self.metrics)}")
        return MetricFrame(
            self.machines, tuple(metrics), self.groups, self.t0_s, self.step_s, self.values[idx]
        )

    def slice_time(self, start_s: float, end_s: float) -> MetricFrame:
        """The grid points with ``start_s <= t < end_s``."""
        ts = self.timestamps
        keep = (ts >= start_s) & (ts < end_s)
        if not keep.any():
            raise DataError(f"no samples between {start_s} and {end_s}")
        first = int(np.argmax(keep))
        return MetricFrame(
            self.machines, self.metrics, self.groups, float(ts[first]), self.step_s,
            self.values[:, :, keep],
        )

    def to_long(self) -> pd.DataFrame:
        """The long table this frame would be read from (one row per sample)."""
        num_metrics, num_machines, num_steps = self.values.shape
        ts = np.tile(self.timestamps, num_metrics * num_machines)
        machine = np.tile(np.repeat(np.arange(num_machines), num_steps), num_metrics)
        metric = np.repeat(np.arange(num_metrics), num_machines * num_steps)
        group_codes, group_names = pd.factorize(np.asarray(self.groups, dtype=object))
        return pd.DataFrame(
            {
                "timestamp": ts,
                "machine": _categorical(machine, self.machines),
                "metric": _categorical(metric, self.metrics),
                "value": self.values.reshape(-1),
                "group": _categorical(group_codes[machine], list(group_names)),
            }
        )


def _categorical(codes: np.ndarray, names: Sequence[object]) -> pd.Categorical[str]:
    return pd.Categorical.from_codes(codes, categories=pd.Index([str(n) for n in names]))


def minmax_scale(values: np.ndarray) -> np.ndarray:
    """Scale each metric (axis 0) to [0, 1] over all machines and times.

    A constant metric becomes all zeros: there is nothing to tell machines apart by.
    """
    lo = values.min(axis=(1, 2), keepdims=True)
    hi = values.max(axis=(1, 2), keepdims=True)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    return ((values - lo) / span).astype(np.float32)


def read_table(path: Path) -> pd.DataFrame:
    """Read a long metric table from CSV or Parquet and validate it.

    Raises
    ------
    DataError
        The file is missing, has another extension, lacks a column, or has a value or
        timestamp that is not a number (the message names the file and line).
    """
    if not path.exists():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            df = pd.read_csv(path, dtype={"machine": str, "metric": str, "group": str})
        elif suffix in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        else:
            raise DataError(f"{path}: expected a .csv or .parquet file, got {suffix!r}")
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc
    return validate_table(df, source=str(path), csv_lines=suffix == ".csv")


def validate_table(
    df: pd.DataFrame, source: str = "table", csv_lines: bool = False
) -> pd.DataFrame:
    """Check columns and types of a long table; return it with numeric columns as float."""
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(
            f"{source}: missing column(s) {missing}; expected {list(REQUIRED_COLUMNS)} "
            "and optionally 'group'"
        )
    if df.empty:
        raise DataError(f"{source}: the table has no rows")
    out = df.copy()
    for column in ("timestamp", "value"):
        numeric = pd.to_numeric(out[column], errors="coerce")
        bad = numeric.isna() & out[column].notna()
        if column == "timestamp":
            bad |= out[column].isna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            where = f"line {row + 2}" if csv_lines else f"row {row}"
            raise DataError(
                f"{source}, {where}: {column} {out[column].iloc[row]!r} is not a number"
            )
        out[column] = numeric.astype(np.float64)
    for column in ("machine", "metric"):
        if out[column].isna().any():
            row = int(np.flatnonzero(out[column].isna().to_numpy())[0])
            where = f"line {row + 2}" if csv_lines else f"row {row}"
            raise DataError(f"{source}, {where}: empty {column}")
        out[column] = out[column].astype(str)
    out = out[out["value"].notna()]
    return out


def align(
    table: pd.DataFrame,
    step_s: float = 1.0,
    metrics: list[str] | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
) -> MetricFrame:
    """Align a (validated) long table onto one time grid, nearest-sample fill.

    Parameters
    ----------
    table
        Columns ``timestamp, machine, metric, value`` and optionally ``group``.
    step_s
        Grid spacing in seconds (the paper samples every second).
    metrics
        Metrics to keep, in this order; a metric absent from the table raises.
        ``None`` keeps all, sorted by name.
    start_s, end_s
        Grid bounds; default the first and last timestamp.

    Raises
    ------
    DataError
        The table (or the requested window) is empty, or a requested metric is absent.

    Notes
    -----
    A machine that has no sample at all of some metric cannot be aligned for it; it is dropped
    from the frame with a logged warning rather than invented.
    """
    if step_s <= 0:
        raise DataError(f"step_s must be > 0; got {step_s}")
    if table.empty:
        raise DataError("no samples in the window: the metric table is empty")
    metric_raw, metric_uniques = pd.factorize(table["metric"])
    present = sorted(str(u) for u in metric_uniques)
    wanted = present if metrics is None else list(metrics)
    absent = [m for m in wanted if m not in present]
    if absent:
        raise DataError(f"metric(s) {absent} have no samples; present: {present}")
    metric_index = {m: i for i, m in enumerate(wanted)}
    lookup = np.array([metric_index.get(str(u), -1) for u in metric_uniques])
    metric_codes = lookup[metric_raw]
    rows = metric_codes >= 0
    ts = table["timestamp"].to_numpy(dtype=np.float64)[rows]
    vals = table["value"].to_numpy(dtype=np.float64)[rows]
    metric_codes = metric_codes[rows]
    lo = float(ts.min()) if start_s is None else start_s
    hi = float(ts.max()) if end_s is None else end_s
    if hi < lo:
        raise DataError(f"empty window: end {hi} is before start {lo}")
    num_steps = int(np.floor((hi - lo) / step_s + 1e-9)) + 1
    grid = lo + step_s * np.arange(num_steps)

    machine_raw, machine_uniques = pd.factorize(table["machine"])
    names = np.array([str(u) for u in machine_uniques], dtype=object)
    by_name = np.argsort(names, kind="stable")
    rank = np.empty(len(names), dtype=np.int64)
    rank[by_name] = np.arange(len(names))
    machine_codes = rank[machine_raw[rows]]
    machines = pd.Index(names[by_name])
    num_machines = len(machines)
    series = metric_codes * num_machines + machine_codes
    order = np.lexsort((ts, series))
    series, ts, vals = series[order], ts[order], vals[order]
    bounds = np.searchsorted(series, np.arange(len(wanted) * num_machines + 1))

    values = np.zeros((len(wanted), num_machines, num_steps), dtype=np.float32)
    have = np.zeros((len(wanted), num_machines), dtype=bool)
    for sid in range(len(wanted) * num_machines):
        a, b = bounds[sid], bounds[sid + 1]
        if a == b:
            continue
        s_ts, s_v = ts[a:b], vals[a:b]
        right = np.clip(np.searchsorted(s_ts, grid), 0, b - a - 1)
        left = np.clip(right - 1, 0, b - a - 1)
        pick = np.where(np.abs(s_ts[left] - grid) <= np.abs(s_ts[right] - grid), left, right)
        values[sid // num_machines, sid % num_machines] = s_v[pick]
        have[sid // num_machines, sid % num_machines] = True

    complete = have.all(axis=0)
    if not complete.any():
        raise DataError("no machine reports every requested metric")
    for m_idx in np.flatnonzero(~complete):
        lacking = [wanted[i] for i in np.flatnonzero(~have[:, m_idx])]
        log.warning("machine %s has no samples of %s; skipped", machines[m_idx], lacking)
    groups = _groups_of(table, machines)
    keep = np.flatnonzero(complete)
    return MetricFrame(
        machines=tuple(str(machines[i]) for i in keep),
        metrics=tuple(wanted),
        groups=tuple(groups[i] for i in keep),
        t0_s=lo,
        step_s=step_s,
        values=values[:, keep],
    )


def _groups_of(table: pd.DataFrame, machines: pd.Index) -> list[str]:
    if "group" not in table.columns:
        return ["all"] * len(machines)
    codes, uniques = pd.factorize(table["machine"])
    _, first_row = np.unique(codes, return_index=True)
    group_col = table["group"].to_numpy()
    first = {str(uniques[c]): group_col[r] for c, r in zip(codes[first_row], first_row,
                                                           strict=True)}
    return [str(first[m]) if pd.notna(first.get(m)) else "all" for m in machines]
