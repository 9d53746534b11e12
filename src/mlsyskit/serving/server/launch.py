"""Build the engine and app from names, and run them with uvicorn (blocking or in a thread)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI

from mlsyskit.errors import ConfigError
from mlsyskit.serving.errors import ServingError
from mlsyskit.serving.server.app import create_app
from mlsyskit.serving.server.generation import ServedModel

if TYPE_CHECKING:
    from mlsyskit.serving.engine import Engine


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``mlsyskit serve`` needs.

    Parameters
    ----------
    model : str
        A model preset ("tiny", "small") served with random weights from ``seed``; the public
        model name unless ``checkpoint`` is given (then the checkpoint directory's name).
    policy : str
        A registered serving policy ("fcfs", "sjf", ...).
    checkpoint : Path or None
        A local Hugging Face Llama directory (weights + tokenizer) instead of a preset.
    num_device_blocks, num_host_blocks, block_size : int
        KV pools of the engine.
    max_num_seqs, max_num_batched_tokens : int
        Batch limits per step.
    offload : str or None
        ``"neo"``, ``"fastdecode"`` or ``"none"``: serve with NEO's engine
        (:mod:`mlsyskit.serving.neo.routing`; FCFS, presets only). ``None``: the plain engine.
    """

    model: str = "tiny"
    policy: str = "fcfs"
    host: str = "127.0.0.1"
    port: int = 8000
    checkpoint: Path | None = None
    block_size: int = 16
    num_device_blocks: int = 256
    num_host_blocks: int = 256
    max_num_seqs: int = 64
    max_num_batched_tokens: int = 512
    seed: int = 0
    log_level: str = "info"
    offload: str | None = None


def build_app(config: ServerConfig) -> FastAPI:
    """The engine (real PyTorch executor) and the app for ``config``.

    Raises
    ------
    UnknownNameError
        For an unknown model preset or policy.
    ModelError
        For a bad checkpoint directory.
    """
    from mlsyskit.serving.engine import build_engine
    from mlsyskit.serving.model import get_model_config, load_tokenizer, model_config_from_hf

    if config.checkpoint is not None:
        model_config = model_config_from_hf(config.checkpoint)
        name = config.checkpoint.name
    else:
        model_config = get_model_config(config.model)
        name = config.model
    _check_fits_in_memory(name, model_config.num_params)
    tokenizer = load_tokenizer(config.checkpoint)
    if tokenizer.vocab_size > model_config.vocab_size:  # ids past the embedding would crash a step
        raise ConfigError(
            f"{config.checkpoint or name}: the tokenizer has {tokenizer.vocab_size} ids but the "
            f"model only {model_config.vocab_size}"
        )
    if config.offload is not None:
        engine = _offload_engine(config)
    else:
        engine = build_engine(
            config.model, config.policy, checkpoint=config.checkpoint,
            block_size=config.block_size, num_device_blocks=config.num_device_blocks,
            num_host_blocks=config.num_host_blocks, max_num_seqs=config.max_num_seqs,
            max_num_batched_tokens=config.max_num_batched_tokens, seed=config.seed,
        )
    return create_app(engine, ServedModel(name, model_config.max_position, tokenizer))


def _offload_engine(config: ServerConfig) -> Engine:
    """NEO's real engine for ``--offload`` (raises ConfigError for what it cannot serve)."""
    from mlsyskit.serving.neo import routing
    from mlsyskit.serving.neo.scheduler import OffloadMode

    try:
        mode = OffloadMode(config.offload)
    except ValueError:
        raise ConfigError(f"unknown offload mode {config.offload!r}; known: "
                          + ", ".join(m.value for m in OffloadMode)) from None
    routing.check_common(mode, policy=config.policy, swap_preemption=None)
    return routing.build_offload_torch_engine(
        mode, model=config.model, checkpoint=config.checkpoint, block_size=config.block_size,
        num_device_blocks=config.num_device_blocks, num_host_blocks=config.num_host_blocks,
        max_num_seqs=config.max_num_seqs, max_num_batched_tokens=config.max_num_batched_tokens,
        seed=config.seed,
    )


def run_server(config: ServerConfig, app: FastAPI | None = None) -> None:
    """Serve ``app`` (default: ``build_app(config)``) with uvicorn until interrupted (Ctrl-C)."""
    import uvicorn

    uvicorn.run(app if app is not None else build_app(config), host=config.host,
                port=config.port, log_level=config.log_level)


def _check_fits_in_memory(name: str, num_params: int) -> None:
    """Refuse a model whose float32 weights exceed the free memory, instead of thrashing."""
    import os

    need = 4 * num_params
    free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    if need > free:
        raise ConfigError(
            f"model {name!r} needs {need / 2**30:.1f} GiB of float32 weights but only "
            f"{free / 2**30:.1f} GiB of memory is free; paper-scale presets are for the "
            "simulator (`mlsyskit serve bench --executor sim`)"
        )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (for tests and demos)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_in_thread(
    app: FastAPI, host: str = "127.0.0.1", port: int | None = None, *, timeout_s: float = 30.0
) -> Iterator[str]:
    """Run ``app`` with uvicorn in a thread; yields the base URL and always stops the server.

    Raises
    ------
    ServingError
        If the server does not start, or does not stop, within ``timeout_s``.
    """
    import uvicorn

    port = free_port(host) if port is None else port
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="mlsyskit-uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise ServingError(f"the server on {host}:{port} did not start")
            time.sleep(0.02)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout_s)
        if thread.is_alive():
            raise ServingError(f"the server on {host}:{port} did not stop within {timeout_s} s")
