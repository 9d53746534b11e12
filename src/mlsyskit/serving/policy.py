"""Serving policies: one small class decides *who* runs; the scheduler does the rest.

A policy answers four questions and never touches blocks or tensors:

- :meth:`Policy.priority` - a sort key, lower runs first (FCFS: arrival; SJF: length);
- :meth:`Policy.choose_victim` - whom to preempt when memory or slots run out;
- :meth:`Policy.kv_action` - what to do with the KV of a request paused for an API call
  (preserve, discard and recompute, or swap: LAMPS' question);
- :meth:`Policy.observe` - a hook that sees every :class:`StepResult` (TRAIL refines its
  length predictions from hidden states there).

The engine never branches on a policy's name; new policies register in :data:`POLICY_ENTRIES`.
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

from mlsyskit.errors import ConfigError, UnknownNameError
from mlsyskit.serving.plan import StepResult
from mlsyskit.serving.request import ApiCall, Request, RequestStatus


class KVAction(enum.Enum):
    """What happens to a request's KV cache when it stops running for a while."""

    PRESERVE = "preserve"  # keep the blocks on the device (costs memory while paused)
    DISCARD = "discard"  # free them and recompute the context later (costs compute)
    SWAP = "swap"  # copy them to the host pool and back (costs link transfers)


class Policy:
    """Base policy: FCFS order, preempt the lowest-priority running request, discard KV.

    Parameters
    ----------
    preemption
        KV action for a request preempted because the device pool is full: ``SWAP`` or
        ``DISCARD`` (recompute). ``SWAP`` falls back to discard when the host pool is full
        (the scheduler counts those in ``num_swap_fallbacks``).
    api_action
        KV action during an API call when the policy has no better idea.

    Class attributes
    ----------------
    dynamic
        ``True`` if priorities change while requests wait or run; the scheduler then
        recomputes every key each step (O(requests)); static keys are computed once.
    preemptive
        ``True`` if a better waiting request may preempt a running one (SRPT-like policies).
    hidden_layers
        Layers whose hidden states the policy wants in :class:`StepResult` (TRAIL).
    """

    name: ClassVar[str] = "base"
    dynamic: ClassVar[bool] = False
    preemptive: bool = False
    hidden_layers: tuple[int, ...] = ()

    def __init__(
        self, *, preemption: KVAction = KVAction.DISCARD, api_action: KVAction = KVAction.DISCARD
    ) -> None:
        if preemption is KVAction.PRESERVE:
            raise ConfigError("preemption must free device memory: use 'swap' or 'discard'")
        self.preemption = preemption
        self.api_action = api_action

    def priority(self, request: Request, now: float) -> tuple[float, ...]:
        """Sort key of a request at time ``now``; lower runs first."""
        return (request.arrival_time, request.seq_no)

    def choose_victim(self, running: Sequence[Request], incoming: Request) -> Request | None:
        """Whom to preempt so that ``incoming`` can run.

        ``running`` holds the candidates in priority order (best first). If ``incoming`` is
        itself running (it needs one more block), a victim is required and may be ``incoming``
        itself; for a waiting ``incoming`` (only asked when :attr:`preemptive`), ``None`` means
        "let it wait".
        """
        if not running:
            return None
        worst = running[-1]
        if incoming.status is RequestStatus.RUNNING:
            return worst
        return worst if worst.sort_key > incoming.sort_key else None

    def preemption_action(self, request: Request) -> KVAction:
        """KV action for a request preempted for memory: swap or discard."""
        return self.preemption

    def kv_action(self, request: Request, call: ApiCall) -> KVAction:
        """KV action while ``request`` waits for ``call`` to return."""
        return self.api_action

    def on_arrival(self, request: Request) -> None:
        """Called once when a request enters the engine (e.g. to predict its length)."""

    def observe(self, result: StepResult, requests: Sequence[Request]) -> None:
        """Called after every step with the result and the requests it ran, in plan order."""


class FCFSPolicy(Policy):
    """First come, first served (vLLM's default): arrival order, preempt the latest arrival."""

    name = "fcfs"


class LengthPredictor(Protocol):
    """Anything that predicts a request's output length in tokens."""

    def predict(self, request: Request) -> float: ...


class OracleLength:
    """The true output length: the request's ``output_len_hint``, else its ``max_tokens``."""

    def predict(self, request: Request) -> float:
        if request.output_len_hint is not None:
            return float(request.output_len_hint)
        return float(request.sampling.max_tokens)


class SJFPolicy(Policy):
    """Shortest job first on a predicted output length (an oracle unless a predictor is given).

    The prediction is made once at arrival, so the key is static and the waiting queue stays a
    heap. ``preemptive=True`` lets a shorter waiting job preempt the longest running one.
    """

    name = "sjf"

    def __init__(
        self,
        predictor: LengthPredictor | None = None,
        *,
        preemptive: bool = False,
        preemption: KVAction = KVAction.DISCARD,
        api_action: KVAction = KVAction.DISCARD,
    ) -> None:
        super().__init__(preemption=preemption, api_action=api_action)
        self.predictor: LengthPredictor = predictor or OracleLength()
        self.preemptive = preemptive

    def on_arrival(self, request: Request) -> None:
        request.policy_state["predicted_len"] = self.predictor.predict(request)

    def priority(self, request: Request, now: float) -> tuple[float, ...]:
        predicted = request.policy_state.get("predicted_len")
        if not isinstance(predicted, float):
            predicted = self.predictor.predict(request)
        return (predicted, request.arrival_time, request.seq_no)


class PolicyName(enum.Enum):
    """Registered policies (the CLI's ``--policy`` choices)."""

    FCFS = "fcfs"
    SJF = "sjf"


#: where each policy class lives, imported on use (NEO/LAMPS/TRAIL add one line each)
POLICY_ENTRIES: dict[PolicyName, str] = {
    PolicyName.FCFS: "mlsyskit.serving.policy:FCFSPolicy",
    PolicyName.SJF: "mlsyskit.serving.policy:SJFPolicy",
}


def parse_policy_name(name: PolicyName | str) -> PolicyName:
    """The :class:`PolicyName` for ``name``; an unknown name raises listing the known ones."""
    if isinstance(name, PolicyName):
        return name
    try:
        return PolicyName(name.lower())
    except ValueError:
        raise UnknownNameError("policy", name, [p.value for p in PolicyName]) from None


def make_policy(name: PolicyName | str, **kwargs: Any) -> Policy:
    """Build a registered policy; ``kwargs`` go to its constructor."""
    entry = POLICY_ENTRIES[parse_policy_name(name)]
    module_name, _, attr = entry.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    policy = cls(**kwargs)
    assert isinstance(policy, Policy)
    return policy
