"""Feed a workload to an engine: arrivals, steps and idle jumps (the discrete-event loop).

On a :class:`~mlsyskit.serving.clock.SimClock` the loop jumps over idle time to the next
arrival or API return; on a wall clock it sleeps until then. Either way the same engine,
scheduler and policy run.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from rich.progress import Progress

from mlsyskit.serving.engine import Engine
from mlsyskit.serving.errors import ServingError
from mlsyskit.serving.metrics import RequestMetrics, request_metrics
from mlsyskit.serving.request import SamplingParams
from mlsyskit.serving.workload import RequestSpec


def random_prompt_ids(vocab_size: int, seed: int = 0) -> Callable[[RequestSpec], list[int]]:
    """Prompt ids for specs without any: uniform over the vocabulary, seeded per request."""

    def ids(spec: RequestSpec) -> list[int]:
        rng = random.Random(f"{seed}:{spec.request_id}")
        return [rng.randrange(vocab_size) for _ in range(spec.num_prompt_tokens)]

    return ids


def run_workload(
    engine: Engine,
    specs: Sequence[RequestSpec],
    *,
    prompt_ids: Callable[[RequestSpec], list[int]] | None = None,
    oracle_hints: bool = True,
    progress: bool = False,
) -> list[RequestMetrics]:
    """Serve ``specs`` to completion; returns per-request metrics in finishing order.

    Parameters
    ----------
    prompt_ids
        Makes prompt ids for specs that carry none (a real executor needs ids; the simulator
        only needs lengths, so leave it ``None`` there).
    oracle_hints
        Give each request its true output length as ``output_len_hint`` (what an oracle SJF
        uses; FCFS ignores it).
    """
    order = sorted(specs, key=lambda s: s.arrival_time)
    clock = engine.clock
    finished: list[RequestMetrics] = []
    n = len(order)
    idx = 0
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("serving", total=n)
        while idx < n or engine.has_unfinished():
            now = clock.now()
            while idx < n and order[idx].arrival_time <= now:
                spec = order[idx]
                ids = spec.prompt_token_ids
                if ids is None and prompt_ids is not None:
                    ids = tuple(prompt_ids(spec))
                engine.add_request(
                    ids,
                    SamplingParams(max_tokens=spec.num_output_tokens, ignore_eos=True),
                    request_id=spec.request_id,
                    num_prompt_tokens=spec.num_prompt_tokens,
                    arrival_time=spec.arrival_time,
                    api_calls=spec.api_calls,
                    output_len_hint=spec.num_output_tokens if oracle_hints else None,
                )
                idx += 1
            if not engine.has_unfinished():
                clock.advance_to(order[idx].arrival_time)
                continue
            done = engine.run_step()
            if done:
                finished.extend(request_metrics(r) for r in done)
                bar.update(task, advance=len(done))
            if engine.last_step_idle:
                candidates = [t for t in (engine.next_event_time(),) if t is not None]
                if idx < n:
                    candidates.append(order[idx].arrival_time)
                if not candidates:
                    raise ServingError("engine idle with unfinished requests and nothing ahead")
                clock.advance_to(min(candidates))
    return finished
