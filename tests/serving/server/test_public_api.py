from __future__ import annotations

import mlsyskit.serving.server as server


def test_server_exports() -> None:
    assert set(server.__all__) == {
        "EngineFailedError", "EngineLike", "EngineLoop", "ServedModel", "ServerConfig",
        "build_app", "create_app", "free_port", "render_chat", "run_server", "serve_in_thread",
    }
    assert all(hasattr(server, name) for name in server.__all__)
