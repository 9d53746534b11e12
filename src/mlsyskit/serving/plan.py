"""The only two types the scheduler and executors exchange: :class:`StepPlan`, :class:`StepResult`.

A plan says, for one engine iteration, which requests run, how many new tokens each computes,
where their KV blocks are, and which blocks to copy between the pools first. An executor (real
PyTorch or simulated) turns it into a result: the sampled token per request, how long the step
took, and optionally hidden states a policy asked for. Nothing else crosses that boundary.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlsyskit.serving.request import Request


@dataclass(frozen=True, slots=True)
class StepPlan:
    """One iteration's work.

    Parameters
    ----------
    step_id
        Counter of plans made by this scheduler.
    requests
        The scheduled requests, in batch order. Executors read their ids, token ids and
        ``num_computed_tokens`` (the cache length *before* this step) but never change them.
    num_new_tokens
        New tokens per request this step (a prompt chunk, a recompute or 1 for a decode).
    context_lens
        Tokens in the cache after this step per request (``num_computed_tokens + new``).
    block_tables
        Device block ids per request, covering ``context_lens`` (read-only views).
    swap_out
        ``(device_block, host_block)`` copies to do *before* ``swap_in`` and the compute.
    swap_in
        ``(host_block, device_block)`` copies to do before the compute.
    num_batched_tokens, sum_context_tokens, sum_attention_pairs
        Aggregates the cost model needs: Σ new tokens, Σ context lengths and
        Σ new_i × context_i (query-key pairs of attention), computed once while planning.
    hidden_layers
        Layers whose hidden state (at each request's last new token) the policy wants back.
    num_prefill_seqs
        Requests with more than one new token (prompt chunks, recomputes, API returns).
    """

    step_id: int
    requests: list[Request]
    num_new_tokens: list[int]
    context_lens: list[int]
    block_tables: list[list[int]]
    swap_out: list[tuple[int, int]] = field(default_factory=list)
    swap_in: list[tuple[int, int]] = field(default_factory=list)
    num_batched_tokens: int = 0
    sum_context_tokens: int = 0
    sum_attention_pairs: int = 0
    hidden_layers: tuple[int, ...] = ()
    num_prefill_seqs: int = 0

    @property
    def num_seqs(self) -> int:
        return len(self.requests)

    @property
    def is_empty(self) -> bool:
        return not self.requests and not self.swap_out and not self.swap_in

    def samples(self, index: int) -> bool:
        """Whether request ``index`` gets a new token this step (its cache catches up)."""
        return self.context_lens[index] >= self.requests[index].num_tokens


@dataclass(frozen=True, slots=True)
class StepResult:
    """What an executor did with a :class:`StepPlan`.

    Parameters
    ----------
    step_id
        The plan's ``step_id``.
    token_ids
        Sampled token per planned request (ignored for a request whose prompt chunk did not
        finish its prompt; executors may put -1 there).
    duration_s
        Time the step took: measured (real executor) or from the cost model (simulated).
    hidden_states
        ``{layer: array [num_seqs, hidden]}`` for ``plan.hidden_layers`` (empty otherwise).
    """

    step_id: int
    token_ids: list[int]
    duration_s: float
    hidden_states: Mapping[int, Any] = field(default_factory=dict)
