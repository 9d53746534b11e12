"""Run an engine in a background thread and hand each request's tokens to asyncio.

The HTTP handlers live on the asyncio event loop; ``Engine.step`` is blocking compute. One
thread owns the engine: it applies queued commands (add, abort) between steps, steps while
work is left, and pushes every ``RequestOutput`` to the asyncio queue of its request with
``loop.call_soon_threadsafe``. Handlers never call the engine themselves, so a long step never
blocks the event loop, and an ``add`` that the engine refuses (e.g. a request too large for the
KV pool) comes back to the handler as an exception before any response byte is sent.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

from mlsyskit.serving.engine import EngineStats, RequestOutput
from mlsyskit.serving.errors import ServingError
from mlsyskit.serving.request import SamplingParams

log = logging.getLogger(__name__)


class EngineLike(Protocol):
    """What the server needs from an engine (``mlsyskit.serving.engine.Engine`` has it)."""

    def add_request(
        self,
        prompt_token_ids: Sequence[int] | None = None,
        sampling: SamplingParams | None = None,
        *,
        request_id: str | None = None,
    ) -> str: ...

    def abort(self, request_id: str) -> bool: ...

    def has_unfinished(self) -> bool: ...

    def step(self) -> list[RequestOutput]: ...

    def stats(self) -> EngineStats: ...


class EngineFailedError(ServingError):
    """The engine thread stopped on an exception; the server can no longer generate."""


@dataclass
class RequestStream:
    """A submitted request: its id and the queue its outputs (or a failure) arrive on."""

    request_id: str
    queue: asyncio.Queue[RequestOutput | BaseException] = field(default_factory=asyncio.Queue)


@dataclass(frozen=True)
class _Add:
    request_id: str
    prompt_token_ids: list[int]
    sampling: SamplingParams
    done: Future[None]


@dataclass(frozen=True)
class _Abort:
    request_id: str


class EngineLoop:
    """Owns an engine in a thread; safe to use from one asyncio event loop.

    Parameters
    ----------
    engine : EngineLike
        The engine to drive; nothing else may call it while the loop runs.
    on_step : callable, optional
        Called in the engine thread after each step with the step's outputs and the engine's
        stats (the server updates its metrics there).
    idle_wait_s : float
        How long the thread sleeps when the engine has nothing to do, unless woken by a command.
    """

    def __init__(
        self,
        engine: EngineLike,
        *,
        on_step: Callable[[list[RequestOutput], EngineStats], None] | None = None,
        idle_wait_s: float = 0.05,
    ) -> None:
        self.engine = engine
        self.on_step = on_step
        self.idle_wait_s = idle_wait_s
        self.failure: BaseException | None = None
        self._commands: list[_Add | _Abort] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._streams: dict[str, RequestStream] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.latest_stats: EngineStats = engine.stats()

    # --- life cycle (event loop thread) -----------------------------------------------------
    def start(self) -> None:
        """Start the engine thread; call from the event loop that will submit requests."""
        if self._thread is not None:
            raise ServingError("EngineLoop.start called twice")
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="mlsyskit-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread (after its current step) and wait for it."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                raise ServingError(f"engine thread did not stop within {timeout_s} s")

    @property
    def is_alive(self) -> bool:
        """Whether the engine thread runs and has not failed."""
        return self._thread is not None and self._thread.is_alive() and self.failure is None

    # --- requests (event loop thread) -------------------------------------------------------
    async def submit(
        self, request_id: str, prompt_token_ids: list[int], sampling: SamplingParams
    ) -> RequestStream:
        """Queue a request; returns once the engine accepted it.

        Raises
        ------
        EngineFailedError
            If the engine thread is not running.
        MlsyskitError
            Whatever ``add_request`` raised (e.g. ``RequestTooLargeError``).
        """
        if not self.is_alive:
            raise EngineFailedError(f"the engine is not running ({self.failure!r})")
        stream = RequestStream(request_id)
        done: Future[None] = Future()
        with self._lock:
            self._streams[request_id] = stream
            self._commands.append(_Add(request_id, prompt_token_ids, sampling, done))
        self._wake.set()
        try:
            await asyncio.wrap_future(done)
        except BaseException:
            with self._lock:
                self._streams.pop(request_id, None)
            raise
        return stream

    def abort(self, request_id: str) -> None:
        """Ask the engine to drop a request (e.g. its client went away)."""
        with self._lock:
            self._streams.pop(request_id, None)
            self._commands.append(_Abort(request_id))
        self._wake.set()

    # --- engine thread ----------------------------------------------------------------------
    def _apply_commands(self) -> None:
        with self._lock:
            commands, self._commands = self._commands, []
        for command in commands:
            if isinstance(command, _Abort):
                self.engine.abort(command.request_id)
                continue
            try:
                self.engine.add_request(
                    command.prompt_token_ids, command.sampling, request_id=command.request_id
                )
            except Exception as exc:  # handed to the waiting handler, which answers 400/500
                command.done.set_exception(exc)
            else:
                command.done.set_result(None)

    def _shutdown(self) -> None:
        """On stop: apply the aborts still queued, refuse the adds still queued."""
        with self._lock:
            commands, self._commands = self._commands, []
        for command in commands:
            if isinstance(command, _Abort):
                self.engine.abort(command.request_id)
            else:
                command.done.set_exception(EngineFailedError("the server is shutting down"))

    def _deliver(self, item: RequestOutput | BaseException, request_id: str) -> None:
        with self._lock:
            stream = self._streams.get(request_id)
            if stream is not None and (not isinstance(item, RequestOutput) or item.finished):
                del self._streams[request_id]
        if stream is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(stream.queue.put_nowait, item)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._apply_commands()
                if not self.engine.has_unfinished():
                    self._wake.wait(self.idle_wait_s)
                    self._wake.clear()
                    continue
                outputs = self.engine.step()
                self.latest_stats = self.engine.stats()
                if self.on_step is not None:
                    self.on_step(outputs, self.latest_stats)
                for output in outputs:
                    self._deliver(output, output.request_id)
                if not outputs:  # e.g. every request waits for an API call: do not spin
                    self._wake.wait(0.002)
                    self._wake.clear()
            self._shutdown()
        except BaseException as exc:
            log.exception("engine thread failed")
            self.failure = exc
            with self._lock:
                pending = list(self._streams)
                commands, self._commands = self._commands, []
            failure = EngineFailedError(f"the engine failed: {type(exc).__name__}: {exc}")
            for command in commands:
                if isinstance(command, _Add):
                    command.done.set_exception(failure)
            for request_id in pending:
                self._deliver(failure, request_id)
