"""The public API of mlsyskit.serving.neo is pinned, and importing it does not load torch."""

from __future__ import annotations

import subprocess
import sys

import mlsyskit.serving.neo as neo


def test_all_is_pinned() -> None:
    assert sorted(neo.__all__) == sorted([
        "SETUPS", "CostTables", "DeviceOnly", "ExecMode", "ModeRule", "NeoBlockManager",
        "NeoConfig", "NeoEngine", "NeoScheduler", "NeoSimExecutor", "NeoStepPlan", "OffloadMode",
        "RooflineLayerCosts", "build_sim_engine",
    ])
    for name in neo.__all__:
        assert hasattr(neo, name)


def test_import_does_not_load_torch() -> None:
    code = ("import sys, mlsyskit.serving.neo, mlsyskit.serving.neo.cli; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         check=True)
    assert out.stdout.strip() == "False"
