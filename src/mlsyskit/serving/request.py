"""Requests: what the engine serves, with two counters and no prefill/decode phase.

A request knows how many tokens it has (``num_tokens``: prompt + generated so far) and how many
of them are already in the KV cache (``num_computed_tokens``). Each step the scheduler gives it
``num_tokens - num_computed_tokens`` new tokens or fewer; when the cache catches up, the model
samples one more token. A prompt, a prompt chunk, a decode step and a recompute after preemption
are then the same thing, which is why there is no phase flag (the vLLM v1 idea).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from mlsyskit.errors import ConfigError


class RequestStatus(enum.IntEnum):
    """Life cycle of a request, ordered so that ``status >= FINISHED_STOPPED`` means finished.

    WAITING: never run yet (or preempted by recompute: its KV was discarded).
    RUNNING: holds device KV blocks and is scheduled every step it fits the budget.
    SWAPPED: preempted by swapping; its KV lives in the host pool.
    PAUSED: waiting for an API call to return (augmented LLMs, see :class:`ApiCall`).
    """

    WAITING = 0
    RUNNING = 1
    SWAPPED = 2
    PAUSED = 3
    FINISHED_STOPPED = 4
    FINISHED_LENGTH = 5
    FINISHED_ABORTED = 6

    @property
    def is_finished(self) -> bool:
        return self >= RequestStatus.FINISHED_STOPPED


class FinishReason(enum.Enum):
    """Why a request ended (the OpenAI API's ``finish_reason`` values)."""

    STOP = "stop"
    LENGTH = "length"
    ABORT = "abort"


_FINISH_REASON = {
    RequestStatus.FINISHED_STOPPED: FinishReason.STOP,
    RequestStatus.FINISHED_LENGTH: FinishReason.LENGTH,
    RequestStatus.FINISHED_ABORTED: FinishReason.ABORT,
}


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens and when to stop.

    Parameters
    ----------
    max_tokens
        Output tokens to generate at most (the request finishes with ``length`` there).
    temperature
        0 means greedy (argmax); > 0 samples from softmax(logits / temperature).
    seed
        Seed of this request's sampler (used when temperature > 0), so runs repeat.
    ignore_eos
        Keep generating past the end-of-sequence token (benchmarks with fixed lengths).
    """

    max_tokens: int = 16
    temperature: float = 0.0
    seed: int = 0
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be >= 1; got {self.max_tokens}")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0; got {self.temperature}")


@dataclass(frozen=True)
class ApiCall:
    """An API call an augmented-LLM request makes in the middle of its output (LAMPS, INFERCEPT).

    Parameters
    ----------
    after_num_output_tokens
        The call starts once the request has generated this many output tokens.
    duration_s
        How long the call takes (the request is PAUSED meanwhile).
    num_return_tokens
        Tokens the call's answer adds to the context; they are prefilled when the request resumes.
    """

    after_num_output_tokens: int
    duration_s: float
    num_return_tokens: int = 0


@dataclass(eq=False, slots=True)
class Request:
    """One request inside the engine (mutable; the scheduler owns it).

    ``prompt_token_ids`` may be ``None`` in simulation, where only lengths matter; then
    ``token_ids`` is ``None`` too and generated ids are placeholders.
    """

    request_id: str
    num_prompt_tokens: int
    sampling: SamplingParams
    arrival_time: float
    prompt_token_ids: list[int] | None = None
    api_calls: tuple[ApiCall, ...] = ()
    #: a length hint for length-aware policies (an oracle or a predictor's output); optional
    output_len_hint: int | None = None
    status: RequestStatus = RequestStatus.WAITING
    #: tokens known so far: prompt + generated + API-returned tokens
    num_tokens: int = 0
    #: tokens whose KV is in the cache
    num_computed_tokens: int = 0
    output_token_ids: list[int] = field(default_factory=list)
    #: prompt + generated ids (``None`` in simulation)
    token_ids: list[int] | None = None
    #: the policy's cached sort key (lower runs first); refreshed by the scheduler
    sort_key: tuple[float, ...] = ()
    #: monotonic admission counter, the FCFS tie-breaker
    seq_no: int = 0
    num_preemptions: int = 0
    next_api_index: int = 0
    resume_time: float = 0.0
    first_token_time: float | None = None
    finish_time: float | None = None
    #: policy-owned scratch space (predictions, ages, counters); the engine never reads it
    policy_state: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.num_prompt_tokens < 1:
            raise ConfigError(f"request {self.request_id}: a prompt needs >= 1 token")
        if self.prompt_token_ids is not None:
            if len(self.prompt_token_ids) != self.num_prompt_tokens:
                raise ConfigError(f"request {self.request_id}: prompt length mismatch")
            self.token_ids = list(self.prompt_token_ids)
        self.num_tokens = self.num_prompt_tokens

    @property
    def num_output_tokens(self) -> int:
        return len(self.output_token_ids)

    @property
    def is_finished(self) -> bool:
        return self.status >= RequestStatus.FINISHED_STOPPED

    @property
    def finish_reason(self) -> FinishReason | None:
        return _FINISH_REASON.get(self.status)

    @property
    def next_api_call(self) -> ApiCall | None:
        """The API call still ahead of this request, if any."""
        if self.next_api_index < len(self.api_calls):
            return self.api_calls[self.next_api_index]
        return None

    def remaining_output_tokens(self) -> int:
        """Output tokens left before ``max_tokens`` (an upper bound: EOS may come first)."""
        return self.sampling.max_tokens - len(self.output_token_ids)


def make_request(
    request_id: str,
    num_prompt_tokens: int,
    max_tokens: int,
    *,
    arrival_time: float = 0.0,
    prompt_token_ids: Sequence[int] | None = None,
    api_calls: Sequence[ApiCall] = (),
    output_len_hint: int | None = None,
) -> Request:
    """A request with default sampling (greedy, ``ignore_eos``): handy in tests and simulation."""
    return Request(
        request_id=request_id,
        num_prompt_tokens=num_prompt_tokens,
        sampling=SamplingParams(max_tokens=max_tokens, ignore_eos=True),
        arrival_time=arrival_time,
        prompt_token_ids=list(prompt_token_ids) if prompt_token_ids is not None else None,
        api_calls=tuple(api_calls),
        output_len_hint=output_len_hint,
    )
