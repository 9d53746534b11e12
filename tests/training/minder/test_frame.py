from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsyskit.errors import DataError
from mlsyskit.training.minder.frame import MetricFrame, align, minmax_scale, read_table


def _table(rows: list[tuple[float, str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["timestamp", "machine", "metric", "value"])


def test_align_fills_each_grid_point_from_the_nearest_sample() -> None:
    # machine a is skewed by +0.3 s and misses t=2; machine b is on time
    table = _table([
        (0.3, "a", "cpu", 10.0), (1.3, "a", "cpu", 11.0), (3.3, "a", "cpu", 13.0),
        (0.0, "b", "cpu", 1.0), (1.0, "b", "cpu", 2.0), (2.0, "b", "cpu", 3.0),
        (3.0, "b", "cpu", 4.0),
    ])
    frame = align(table, start_s=0.0, end_s=3.0)
    assert frame.machines == ("a", "b")
    # grid 0,1,2,3: for a, t=2 is 0.7 from 1.3 and 1.3 from 3.3 -> 11
    np.testing.assert_allclose(frame.metric("cpu")[0], [10, 11, 11, 13])
    np.testing.assert_allclose(frame.metric("cpu")[1], [1, 2, 3, 4])
    assert frame.groups == ("all", "all")


def test_a_dead_machine_goes_flat_at_its_last_sample() -> None:
    table = _table([(t, "a", "m", float(t)) for t in range(6)] + [(0.0, "b", "m", 7.0),
                                                                  (1.0, "b", "m", 8.0)])
    frame = align(table)
    np.testing.assert_allclose(frame.metric("m")[1], [7, 8, 8, 8, 8, 8])


def test_machine_without_a_metric_is_skipped_with_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    table = _table([(0, "a", "x", 1), (0, "a", "y", 1), (0, "b", "x", 2)])
    with caplog.at_level(logging.WARNING):
        frame = align(table)
    assert frame.machines == ("a",)
    assert "machine b has no samples of ['y']" in caplog.text


def test_missing_metric_and_empty_window_are_clear_errors() -> None:
    table = _table([(0, "a", "x", 1.0)])
    with pytest.raises(DataError, match=r"metric\(s\) \['gpu'\] have no samples"):
        align(table, metrics=["gpu"])
    with pytest.raises(DataError, match="empty"):
        align(table.iloc[:0])
    with pytest.raises(DataError, match="before start"):
        align(table, start_s=5, end_s=1)


def test_groups_come_from_the_group_column() -> None:
    table = _table([(0, "a", "x", 1.0), (0, "b", "x", 1.0)])
    table["group"] = ["s0", "s1"]
    assert align(table).groups == ("s0", "s1")


def test_minmax_scale_per_metric_and_constant_metric_is_zero() -> None:
    values = np.array([[[0.0, 5.0], [10.0, 5.0]], [[3.0, 3.0], [3.0, 3.0]]])
    scaled = minmax_scale(values)
    np.testing.assert_allclose(scaled[0], [[0, 0.5], [1, 0.5]])
    np.testing.assert_allclose(scaled[1], 0)


def test_read_table_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "m.csv"
    bad.write_text("timestamp,machine,metric,value\n0,a,x,1\n1,a,x,oops\n")
    with pytest.raises(DataError, match=r"m.csv, line 3: value 'oops' is not a number"):
        read_table(bad)
    missing = tmp_path / "n.csv"
    missing.write_text("timestamp,machine,value\n0,a,1\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['metric'\]"):
        read_table(missing)
    with pytest.raises(DataError, match=r"expected a \.csv or \.parquet"):
        (tmp_path / "x.txt").write_text("")
        read_table(tmp_path / "x.txt")
    with pytest.raises(DataError, match="no such file"):
        read_table(tmp_path / "absent.csv")


def test_parquet_round_trip_through_to_long(tmp_path: Path) -> None:
    values = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    frame = MetricFrame(("m0", "m1", "m2"), ("x", "y"), ("g", "g", "h"), 10.0, 1.0, values)
    path = tmp_path / "t.parquet"
    long = frame.to_long()
    for c in ("machine", "metric", "group"):
        long[c] = long[c].astype(str)
    long.to_parquet(path)
    back = align(read_table(path), metrics=["x", "y"])
    np.testing.assert_array_equal(back.values, values)
    assert back.groups == ("g", "g", "h") and back.t0_s == 10.0


def test_frame_select_and_slice() -> None:
    values = np.arange(12, dtype=np.float32).reshape(2, 1, 6)
    frame = MetricFrame(("a",), ("x", "y"), ("g",), 0.0, 1.0, values)
    assert frame.select(["y"]).values[0, 0, 0] == 6
    part = frame.slice_time(2, 4)
    assert part.t0_s == 2 and part.num_steps == 2
    with pytest.raises(DataError, match="not in the data"):
        frame.select(["z"])
    with pytest.raises(DataError, match="no samples between"):
        frame.slice_time(100, 200)
