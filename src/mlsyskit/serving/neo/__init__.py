"""NEO: decode attention and KV cache on the host CPU, with asymmetric two-sub-batch pipelining.

The public API (importing it does not import torch; the real executor lives in
:mod:`mlsyskit.serving.neo.torch_executor` and :mod:`mlsyskit.serving.neo.real`):

* :class:`NeoScheduler`, :class:`NeoConfig`, :class:`OffloadMode`, :class:`ModeRule` - the
  load-aware rules;
* :class:`NeoStepPlan`, :class:`ExecMode` - what the scheduler hands an executor;
* :class:`NeoBlockManager` - host tables that grow;
* :class:`CostTables`, :class:`RooflineLayerCosts` - profiled and true per-layer costs;
* :class:`NeoSimExecutor`, :func:`build_sim_engine`, :data:`SETUPS` - the paper's setups;
* :class:`DeviceOnly` - the device-only baseline's preemption and chunk budget (vLLM-256/-512).
"""

from __future__ import annotations

from mlsyskit.serving.neo.block_manager import NeoBlockManager
from mlsyskit.serving.neo.cost import CostTables, RooflineLayerCosts
from mlsyskit.serving.neo.engine import SETUPS, DeviceOnly, NeoEngine, build_sim_engine
from mlsyskit.serving.neo.plan import ExecMode, ModeRule, NeoStepPlan
from mlsyskit.serving.neo.scheduler import NeoConfig, NeoScheduler, OffloadMode
from mlsyskit.serving.neo.sim import NeoSimExecutor

__all__ = [
    "SETUPS",
    "CostTables",
    "DeviceOnly",
    "ExecMode",
    "ModeRule",
    "NeoBlockManager",
    "NeoConfig",
    "NeoEngine",
    "NeoScheduler",
    "NeoSimExecutor",
    "NeoStepPlan",
    "OffloadMode",
    "RooflineLayerCosts",
    "build_sim_engine",
]
