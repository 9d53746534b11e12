"""OpenAI-compatible HTTP server for the serving engine (FastAPI + uvicorn + Prometheus).

``create_app(engine, served)`` wraps any engine with ``add_request / step / abort /
has_unfinished / stats`` (``EngineLike``); ``build_app(ServerConfig(...))`` builds the real
engine from names; ``run_server`` and ``serve_in_thread`` run it with uvicorn.

The names are imported lazily (PEP 562): the CLI imports ``server.cli`` at start-up, and
pulling FastAPI and torch in then would make every ``mlsyskit`` command seconds slower.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "create_app": "mlsyskit.serving.server.app",
    "EngineFailedError": "mlsyskit.serving.server.engine_loop",
    "EngineLike": "mlsyskit.serving.server.engine_loop",
    "EngineLoop": "mlsyskit.serving.server.engine_loop",
    "ServedModel": "mlsyskit.serving.server.generation",
    "render_chat": "mlsyskit.serving.server.generation",
    "ServerConfig": "mlsyskit.serving.server.launch",
    "build_app": "mlsyskit.serving.server.launch",
    "free_port": "mlsyskit.serving.server.launch",
    "run_server": "mlsyskit.serving.server.launch",
    "serve_in_thread": "mlsyskit.serving.server.launch",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
