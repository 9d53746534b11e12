from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlsyskit.errors import DataError
from mlsyskit.report import render_results_table, update_readme


def _write(results: Path) -> None:
    results.mkdir()
    (results / "neo.json").write_text(json.dumps({
        "system": "neo", "quick": False, "metrics": {"t4_throughput_gain": 5.2, "x": 1.0},
        "paper": {"t4_throughput_gain": 7.5}, "targets": {"t4_throughput_gain": ">= 4"},
        "target_met": {"t4_throughput_gain": True}, "simulated": ["t4_throughput_gain"],
    }))


def test_table_has_a_row_per_metric(tmp_path: Path) -> None:
    _write(tmp_path / "r")
    table = render_results_table(tmp_path / "r")
    assert "| NEO | t4_throughput_gain | 5.2 | 7.5 | >= 4 | yes | simulated |" in table
    assert "| NEO | x |" not in table  # no target, no paper figure: JSON only
    assert "neo.json" not in table and "<system>.json" in table


def test_empty_results_say_so(tmp_path: Path) -> None:
    assert "No results yet" in render_results_table(tmp_path)


def test_readme_is_updated_between_markers(tmp_path: Path) -> None:
    _write(tmp_path / "r")
    readme = tmp_path / "README.md"
    readme.write_text("head\n<!-- results:start -->\nold\n<!-- results:end -->\ntail\n")
    update_readme(readme, tmp_path / "r")
    text = readme.read_text()
    assert text.startswith("head\n") and text.endswith("tail\n")
    assert "old" not in text and "t4_throughput_gain" in text


def test_readme_without_markers_is_an_error(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("nothing here")
    with pytest.raises(DataError, match="markers"):
        update_readme(readme, tmp_path)


def test_corrupt_result_file_names_it(tmp_path: Path) -> None:
    (tmp_path / "cora.json").write_text("{not json")
    with pytest.raises(DataError, match=r"cora\.json"):
        render_results_table(tmp_path)
