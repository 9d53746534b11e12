"""Serving: one LLM inference engine shared by NEO, LAMPS and TRAIL.

The core API is re-exported here; the model (``serving.model``), the HTTP server
(``serving.server``) and the systems built on the engine live in their own subpackages.
"""

from mlsyskit.serving.engine import Engine, EngineStats, ExecutorKind, RequestOutput, build_engine
from mlsyskit.serving.plan import StepPlan, StepResult
from mlsyskit.serving.policy import KVAction, Policy, PolicyName, make_policy
from mlsyskit.serving.request import ApiCall, FinishReason, Request, RequestStatus, SamplingParams
from mlsyskit.serving.scheduler import Scheduler, SchedulerConfig

__all__ = [
    "ApiCall",
    "Engine",
    "EngineStats",
    "ExecutorKind",
    "FinishReason",
    "KVAction",
    "Policy",
    "PolicyName",
    "Request",
    "RequestOutput",
    "RequestStatus",
    "SamplingParams",
    "Scheduler",
    "SchedulerConfig",
    "StepPlan",
    "StepResult",
    "build_engine",
    "make_policy",
]
