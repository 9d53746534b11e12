"""One request's life on the server side: tokenize, check, submit, then stream text deltas.

Byte-level (and BPE) tokens can split a UTF-8 character, so text is re-decoded from all output
ids each time and only the stable part is released; text that could still become a stop string
is held back until it cannot.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass

from mlsyskit.serving.engine import RequestOutput
from mlsyskit.serving.model.tokenizer import HFTokenizer, Tokenizer
from mlsyskit.serving.request import SamplingParams
from mlsyskit.serving.server.engine_loop import EngineLoop, RequestStream
from mlsyskit.serving.server.metrics import ServerMetrics
from mlsyskit.serving.server.protocol import ChatMessage


class HTTPError(Exception):
    """An error the client caused or should know about, answered as OpenAI-style JSON."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None,
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.kind = kind


@dataclass(frozen=True)
class ServedModel:
    """The model a server answers for: its public name, context length and tokenizer."""

    name: str
    max_model_len: int
    tokenizer: Tokenizer


@dataclass(frozen=True)
class Delta:
    """New text of a request; ``finish_reason`` is set on the last one."""

    text: str
    finish_reason: str | None = None


def render_chat(messages: Sequence[ChatMessage], tokenizer: Tokenizer | None = None) -> str:
    """The chat prompt: the tokenizer's own chat template when it has one (a local HF
    tokenizer), else the plain ``<|role|>\\ncontent\\n`` per message + ``<|assistant|>\\n``."""
    if isinstance(tokenizer, HFTokenizer) and tokenizer.has_chat_template:
        return tokenizer.apply_chat_template([m.model_dump() for m in messages])
    return "".join(f"<|{m.role}|>\n{m.content}\n" for m in messages) + "<|assistant|>\n"


class Generation:
    """Submit one request and turn its token outputs into text deltas.

    Parameters
    ----------
    prompt : str or list[int]
        Text (tokenized here) or token ids (checked against the vocabulary).
    max_tokens : int or None
        Output budget; ``None`` means ``default_max_tokens`` or the rest of the context.
    seed : int or None
        Sampling seed; without one, the k-th request of this process uses seed k.
    """

    _counter = itertools.count()

    def __init__(
        self,
        served: ServedModel,
        prompt: str | list[int],
        *,
        max_tokens: int | None,
        default_max_tokens: int | None,
        temperature: float,
        seed: int | None,
        stop: list[str],
        ignore_eos: bool,
        id_prefix: str,
    ) -> None:
        tok = served.tokenizer
        if isinstance(prompt, str):
            ids = tok.encode(prompt)
        else:
            bad = [t for t in prompt if not 0 <= t < tok.vocab_size]
            if bad:
                raise HTTPError(400, f"prompt token ids {bad[:5]} are outside the vocabulary "
                                f"[0, {tok.vocab_size})", param="prompt")
            ids = list(prompt)
        if not ids:
            raise HTTPError(400, "the prompt is empty", param="prompt")
        room = served.max_model_len - len(ids)
        if max_tokens is None:
            max_tokens = room if default_max_tokens is None else min(default_max_tokens, room)
        if room < 1 or len(ids) + max_tokens > served.max_model_len:
            raise HTTPError(
                400,
                f"This model's maximum context length is {served.max_model_len} tokens, but "
                f"the request needs {len(ids) + max(max_tokens, 1)} ({len(ids)} in the prompt, "
                f"{max(max_tokens, 1)} for the completion). Shorten the prompt or lower "
                "max_tokens.",
                param="max_tokens" if room >= 1 else "prompt", code="context_length_exceeded",
            )
        self.served = served
        self.prompt_token_ids = ids
        self.stop = stop
        number = next(self._counter)
        self.request_id = f"{id_prefix}-{uuid.uuid4().hex[:16]}"
        self.sampling = SamplingParams(
            max_tokens=max_tokens, temperature=temperature,
            seed=seed if seed is not None else number, ignore_eos=ignore_eos,
        )
        self.output_token_ids: list[int] = []
        self.finish_reason: str | None = None

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.output_token_ids)

    async def run(self, loop: EngineLoop, metrics: ServerMetrics) -> AsyncGenerator[Delta, None]:
        """Submit the request and yield text deltas until it finishes (aborts it on exit)."""
        arrival = time.perf_counter()
        stream = await loop.submit(self.request_id, self.prompt_token_ids, self.sampling)
        try:
            async for delta in self._deltas(stream, loop, metrics, arrival):
                yield delta
        finally:
            if self.finish_reason is None:  # the client went away or the engine failed
                loop.abort(self.request_id)

    async def _deltas(
        self, stream: RequestStream, loop: EngineLoop, metrics: ServerMetrics, arrival: float
    ) -> AsyncIterator[Delta]:
        text = IncrementalText(self.served.tokenizer, self.stop)
        while True:
            item = await stream.queue.get()
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, RequestOutput)
            if not self.output_token_ids and item.new_token_ids:
                metrics.ttft.labels(self.served.name).observe(time.perf_counter() - arrival)
            self.output_token_ids.extend(item.new_token_ids)
            finish = item.finish_reason.value if item.finished and item.finish_reason else None
            delta, stopped = text.push(item.new_token_ids, finished=item.finished)
            if stopped:
                finish = "stop"
                if not item.finished:
                    loop.abort(self.request_id)
            if finish is None:
                if delta:
                    yield Delta(delta)
                continue
            self.finish_reason = finish
            metrics.e2e.labels(self.served.name).observe(time.perf_counter() - arrival)
            metrics.finished.labels(self.served.name, finish).inc()
            yield Delta(delta, finish)
            return


class IncrementalText:
    """Turns token ids, arriving a few at a time, into text deltas that never change later.

    The whole output is decoded again on every push, and only the settled part is released.
    Trailing U+FFFD is held back, because it may be half a UTF-8 character. So are the last
    ``len(longest stop) - 1`` settled characters, which could still begin a stop string. Once a
    stop string appears, the text ends just before it.
    """

    def __init__(self, tokenizer: Tokenizer, stop: Sequence[str] = ()) -> None:
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.token_ids: list[int] = []
        self.num_sent_chars = 0
        self._hold = max((len(s) for s in self.stop), default=1) - 1

    def push(self, new_token_ids: Sequence[int], *, finished: bool) -> tuple[str, bool]:
        """Add ids; returns ``(new text to send, whether a stop string ended the text)``.

        With ``finished`` (or after a stop) everything left is released.
        """
        self.token_ids.extend(new_token_ids)
        text = self.tokenizer.decode(self.token_ids)
        cut = min((i for i in (text.find(s) for s in self.stop) if i >= 0), default=-1)
        stopped = cut >= 0
        if stopped:
            text = text[:cut]
        end = len(text)
        if not (finished or stopped):
            while end > 0 and text[end - 1] == "\ufffd":  # not settled: maybe half a character
                end -= 1
            end -= self._hold  # the settled tail could still begin a stop string
        delta = text[self.num_sent_chars:end] if end > self.num_sent_chars else ""
        self.num_sent_chars = max(self.num_sent_chars, end)
        return delta, stopped
