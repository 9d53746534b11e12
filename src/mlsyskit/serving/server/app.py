"""The FastAPI app: OpenAI-compatible completions and chat completions, models, health, metrics.

``create_app(engine, served)`` returns an app whose lifespan starts an :class:`EngineLoop`
thread around ``engine``. Every client mistake (malformed JSON, a wrong field, an unknown model,
a prompt longer than the context) is answered with HTTP 400 and an OpenAI-style error body, and
the server goes on serving.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from mlsyskit.errors import MlsyskitError
from mlsyskit.serving.engine import EngineStats
from mlsyskit.serving.server.engine_loop import EngineFailedError, EngineLike, EngineLoop
from mlsyskit.serving.server.generation import (
    Delta,
    Generation,
    HTTPError,
    ServedModel,
    render_chat,
)
from mlsyskit.serving.server.metrics import ServerMetrics
from mlsyskit.serving.server.protocol import (
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatDelta,
    ChatResponseMessage,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    ErrorBody,
    ErrorResponse,
    ModelCard,
    ModelList,
    usage,
)

#: OpenAI's default ``max_tokens`` for /v1/completions; chat defaults to the rest of the context
COMPLETION_DEFAULT_MAX_TOKENS = 16


def _error(status: int, message: str, *, param: str | None = None, code: str | None = None,
           kind: str = "invalid_request_error") -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(message=message, type=kind, param=param, code=code))
    return JSONResponse(body.model_dump(), status_code=status)


def _sse(payload: BaseModel) -> str:
    return f"data: {payload.model_dump_json()}\n\n"


def create_app(engine: EngineLike, served: ServedModel, *, idle_wait_s: float = 0.05) -> FastAPI:
    """An app serving ``engine`` as model ``served.name``.

    The engine thread starts with the app (ASGI lifespan) and stops with it.
    """
    holder: dict[str, EngineLoop] = {}

    def stats() -> EngineStats:
        return holder["loop"].latest_stats if "loop" in holder else engine.stats()

    metrics = ServerMetrics(stats, served.name)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loop = EngineLoop(engine, idle_wait_s=idle_wait_s)
        loop.start()
        holder["loop"] = loop
        try:
            yield
        finally:
            loop.stop()
            # an executor that owns threads (NEO's host attention) releases them with the app
            close = getattr(getattr(engine, "executor", None), "close", None)
            if close is not None:
                close()

    app = FastAPI(title="mlsyskit serving engine", lifespan=lifespan)
    app.state.metrics = metrics
    app.state.served = served

    def engine_loop() -> EngineLoop:
        loop = holder.get("loop")
        if loop is None or not loop.is_alive:
            failure = loop.failure if loop is not None else None
            raise HTTPError(503, f"the engine is not running ({failure!r})",
                            kind="server_error", code="engine_unavailable")
        return loop

    @app.exception_handler(HTTPError)
    async def _http_error(request: Request, exc: HTTPError) -> JSONResponse:
        if 400 <= exc.status < 500:
            metrics.rejected.labels(request.url.path).inc()
        return _error(exc.status, exc.message, param=exc.param, code=exc.code, kind=exc.kind)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.rejected.labels(request.url.path).inc()
        errors = exc.errors()
        first = errors[0] if errors else {}
        if first.get("type") == "json_invalid":
            return _error(400, f"malformed JSON body: {first.get('msg', 'invalid JSON')}",
                          code="invalid_json")
        loc = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(400, f"invalid request: {loc or 'body'}: {first.get('msg', 'invalid')}",
                      param=loc or None)

    @app.exception_handler(MlsyskitError)
    async def _engine_error(request: Request, exc: MlsyskitError) -> JSONResponse:
        if exc.exit_code == 2:
            metrics.rejected.labels(request.url.path).inc()
            return _error(400, str(exc))
        return _error(500, f"{type(exc).__name__}: {exc}", kind="server_error")

    def check_model(name: str) -> None:
        if name != served.name:
            raise HTTPError(400, f"unknown model {name!r}; this server serves {served.name!r}",
                            param="model", code="model_not_found")

    async def start(gen: Generation) -> AsyncIterator[Delta]:
        """Submit now (so engine refusals become 400 before streaming) and return the deltas."""
        loop = engine_loop()
        deltas = gen.run(loop, metrics)
        try:
            first = await deltas.__anext__()
        except EngineFailedError as exc:
            raise HTTPError(503, str(exc), kind="server_error") from exc
        # other MlsyskitErrors (e.g. a request needing more KV blocks than the engine has)
        # go to _engine_error: 400 for bad input, 500 otherwise

        async def chained() -> AsyncIterator[Delta]:
            try:
                yield first
                async for delta in deltas:
                    yield delta
            finally:  # a client that went away closes this; abort the request now, not at GC
                await deltas.aclose()

        return chained()

    @app.get("/health")
    async def health() -> JSONResponse:
        loop = holder.get("loop")
        if loop is None or not loop.is_alive:
            return _error(503, f"engine not running ({loop.failure if loop else None!r})",
                          kind="server_error")
        return JSONResponse({"status": "ok", "model": served.name})

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models() -> ModelList:
        return ModelList(data=[ModelCard(id=served.name, max_model_len=served.max_model_len)])

    @app.post("/v1/completions", response_model=None)
    async def completions(body: CompletionRequest) -> Response:
        check_model(body.model)
        metrics.requests.labels(served.name, "completions").inc()
        gen = Generation(
            served, cast("str | list[int]", body.prompt),
            max_tokens=body.max_tokens, default_max_tokens=COMPLETION_DEFAULT_MAX_TOKENS,
            temperature=body.temperature, seed=body.seed, stop=body.stop_strings(),
            ignore_eos=body.ignore_eos, id_prefix="cmpl",
        )
        deltas = await start(gen)
        if not body.stream:
            text = "".join([d.text async for d in deltas])
            return JSONResponse(CompletionResponse(
                id=gen.request_id, model=served.name,
                choices=[CompletionChoice(text=text, finish_reason=gen.finish_reason)],
                usage=usage(gen.num_prompt_tokens, gen.num_output_tokens),
            ).model_dump())
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        async def events() -> AsyncIterator[str]:
            async for delta in deltas:
                yield _sse(CompletionResponse(
                    id=gen.request_id, model=served.name,
                    choices=[CompletionChoice(text=delta.text,
                                              finish_reason=delta.finish_reason)],
                ))
            if include_usage:
                yield _sse(CompletionResponse(
                    id=gen.request_id, model=served.name, choices=[],
                    usage=usage(gen.num_prompt_tokens, gen.num_output_tokens),
                ))
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionRequest) -> Response:
        check_model(body.model)
        metrics.requests.labels(served.name, "chat_completions").inc()
        gen = Generation(
            served, render_chat(body.messages, served.tokenizer),
            max_tokens=body.max_completion_tokens or body.max_tokens, default_max_tokens=None,
            temperature=body.temperature, seed=body.seed, stop=body.stop_strings(),
            ignore_eos=body.ignore_eos, id_prefix="chatcmpl",
        )
        deltas = await start(gen)
        if not body.stream:
            text = "".join([d.text async for d in deltas])
            return JSONResponse(ChatCompletionResponse(
                id=gen.request_id, model=served.name,
                choices=[ChatChoice(message=ChatResponseMessage(content=text),
                                    finish_reason=gen.finish_reason)],
                usage=usage(gen.num_prompt_tokens, gen.num_output_tokens),
            ).model_dump())
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        async def events() -> AsyncIterator[str]:
            yield _sse(ChatCompletionChunk(
                id=gen.request_id, model=served.name,
                choices=[ChatChunkChoice(delta=ChatDelta(role="assistant", content=""))],
            ))
            async for delta in deltas:
                yield _sse(ChatCompletionChunk(
                    id=gen.request_id, model=served.name,
                    choices=[ChatChunkChoice(delta=ChatDelta(content=delta.text or None),
                                             finish_reason=delta.finish_reason)],
                ))
            if include_usage:
                yield _sse(ChatCompletionChunk(
                    id=gen.request_id, model=served.name, choices=[],
                    usage=usage(gen.num_prompt_tokens, gen.num_output_tokens),
                ))
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app
