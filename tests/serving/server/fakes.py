"""An in-memory engine with the ``EngineLike`` surface: every request outputs a fixed script."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
from fastapi import FastAPI

from mlsyskit.serving.engine import EngineStats, RequestOutput
from mlsyskit.serving.errors import RequestTooLargeError
from mlsyskit.serving.request import FinishReason, SamplingParams

EOS = 257


@dataclass
class _Req:
    prompt: list[int]
    sampling: SamplingParams
    out: list[int] = field(default_factory=list)


class ScriptEngine:
    """Each step, every request emits the next id of ``script`` (``EOS`` ends it unless
    ``ignore_eos``); prompts longer than ``max_prompt`` are refused like a too-small KV pool."""

    def __init__(self, script: Sequence[int], *, max_prompt: int = 10_000,
                 fail_after_steps: int | None = None, step_sleep_s: float = 0.0) -> None:
        self.script = list(script)
        self.step_sleep_s = step_sleep_s
        self.max_prompt = max_prompt
        self.fail_after_steps = fail_after_steps
        self.requests: dict[str, _Req] = {}
        self.aborted: list[str] = []
        self.num_steps = 0
        self.num_prompt_tokens = 0
        self.num_generated = 0
        self.num_finished = 0

    def add_request(self, prompt_token_ids: Sequence[int] | None = None,
                    sampling: SamplingParams | None = None, *,
                    request_id: str | None = None) -> str:
        assert prompt_token_ids is not None and request_id is not None
        if len(prompt_token_ids) > self.max_prompt:
            raise RequestTooLargeError(
                f"request {request_id} needs more KV blocks than the engine has"
            )
        self.requests[request_id] = _Req(list(prompt_token_ids), sampling or SamplingParams())
        self.num_prompt_tokens += len(prompt_token_ids)
        return request_id

    def abort(self, request_id: str) -> bool:
        self.aborted.append(request_id)
        return self.requests.pop(request_id, None) is not None

    def has_unfinished(self) -> bool:
        return bool(self.requests)

    def step(self) -> list[RequestOutput]:
        time.sleep(self.step_sleep_s)
        self.num_steps += 1
        if self.fail_after_steps is not None and self.num_steps > self.fail_after_steps:
            raise RuntimeError("injected executor failure")
        outputs = []
        for rid, req in list(self.requests.items()):
            token = self.script[len(req.out) % len(self.script)]
            req.out.append(token)
            self.num_generated += 1
            reason = None
            if token == EOS and not req.sampling.ignore_eos:
                reason = FinishReason.STOP
            elif len(req.out) >= req.sampling.max_tokens:
                reason = FinishReason.LENGTH
            if reason is not None:
                del self.requests[rid]
                self.num_finished += 1
            outputs.append(RequestOutput(rid, [token], reason is not None, reason))
        return outputs

    def stats(self) -> EngineStats:
        return EngineStats(
            now_s=0.0, num_waiting=0, num_running=len(self.requests), num_swapped=0,
            num_paused=0, device_blocks_used=len(self.requests), device_blocks_total=8,
            host_blocks_used=0, host_blocks_total=4, num_steps=self.num_steps,
            num_prompt_tokens=self.num_prompt_tokens, num_computed_tokens=0,
            num_generated_tokens=self.num_generated, num_preemptions=0, num_swap_outs=0,
            num_finished=self.num_finished,
        )


@asynccontextmanager
async def asgi_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to ``app`` in-process, with the app's lifespan running."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


def sse_payloads(body: str) -> list[str]:
    """The ``data:`` payloads of a server-sent-events body, in order."""
    return [line[len("data: "):] for line in body.splitlines() if line.startswith("data: ")]
