"""Optimus (ATC'25): schedule multimodal encoder work inside the LLM's pipeline bubbles.

Layers: :mod:`config` (YAML job) -> :mod:`costmodel` (per-kernel costs) ->
:mod:`pipeline` (LLM timelines, bubble labels) and :mod:`baselines` -> :mod:`planner`
(encoder plans) -> :mod:`scheduler` / :mod:`search` (coarse + fine bubble scheduling) ->
:mod:`build` (a :class:`Schedule`) -> :mod:`replay` (the independent checker).
The real CPU run (:mod:`cpu_run`) imports torch and is not re-exported here.
"""

from __future__ import annotations

from mlsyskit.training.optimus.build import baseline_schedule, optimus_schedule
from mlsyskit.training.optimus.config import JobConfig, load_builtin, load_config
from mlsyskit.training.optimus.costmodel import Calibration, CostModel
from mlsyskit.training.optimus.replay import ReplayReport, replay
from mlsyskit.training.optimus.schedule import Schedule
from mlsyskit.training.optimus.search import SearchResult, efficiency, search

__all__ = [
    "Calibration",
    "CostModel",
    "JobConfig",
    "ReplayReport",
    "Schedule",
    "SearchResult",
    "baseline_schedule",
    "efficiency",
    "load_builtin",
    "load_config",
    "optimus_schedule",
    "replay",
    "search",
]
