"""OpenAI-compatible HTTP server for the serving engine (FastAPI + uvicorn + Prometheus).

``create_app(engine, served)`` wraps any engine with ``add_request / step / abort /
has_unfinished / stats`` (``EngineLike``); ``build_app(ServerConfig(...))`` builds the real
engine from names; ``run_server`` and ``serve_in_thread`` run it with uvicorn.
"""

from __future__ import annotations

from mlsyskit.serving.server.app import create_app
from mlsyskit.serving.server.engine_loop import EngineFailedError, EngineLike, EngineLoop
from mlsyskit.serving.server.generation import ServedModel, render_chat
from mlsyskit.serving.server.launch import (
    ServerConfig,
    build_app,
    free_port,
    run_server,
    serve_in_thread,
)

__all__ = [
    "EngineFailedError",
    "EngineLike",
    "EngineLoop",
    "ServedModel",
    "ServerConfig",
    "build_app",
    "create_app",
    "free_port",
    "render_chat",
    "run_server",
    "serve_in_thread",
]
