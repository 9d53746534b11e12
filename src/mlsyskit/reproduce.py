"""Runs a system's benchmarks under the reproduce contract and writes ``<out>/<system>.json``."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from mlsyskit.environment import describe_environment
from mlsyskit.errors import BenchmarkError, MlsyskitError
from mlsyskit.results import BenchResult
from mlsyskit.systems import get_system

DEFAULT_RESULTS_DIR = Path("bench/results")


def write_json_atomic(path: Path, payload: object) -> None:
    """Write JSON through a temporary file and a rename, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, sort_keys=False, default=str)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def result_payload(system: str, quick: bool, result: BenchResult, wall_s: float) -> dict[str, Any]:
    """The JSON document of the reproduce contract."""
    return {
        "system": system,
        "quick": quick,
        "metrics": result.metrics,
        "paper": result.paper,
        "targets": result.targets,
        "target_met": result.target_status(),
        "simulated": result.simulated,
        "notes": result.notes,
        "plots": result.plots,
        "wall_s": round(wall_s, 3),
        "environment": describe_environment(),
    }


def run_reproduce(system: str, quick: bool, out_dir: Path) -> dict[str, Any]:
    """Run one system's benchmarks and write its result file.

    Raises
    ------
    UnknownNameError
        ``system`` is not registered.
    NotImplementedSystemError
        The system has no benchmark yet.
    BenchmarkError
        The benchmark raised; nothing is written, an older result file stays as it was.
    """
    info = get_system(system)
    fn = info.reproduce_fn()
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        result = fn(quick, out_dir)
    except MlsyskitError:
        raise
    except Exception as exc:
        raise BenchmarkError(f"{system}: benchmark failed: {type(exc).__name__}: {exc}") from exc
    unknown = sorted(set(result.simulated) - set(result.metrics))
    if unknown:
        raise BenchmarkError(f"{system}: 'simulated' names unknown metrics {unknown}")
    payload = result_payload(system, quick, result, time.perf_counter() - started)
    write_json_atomic(out_dir / f"{system}.json", payload)
    return payload
