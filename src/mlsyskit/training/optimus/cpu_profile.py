"""In-situ measurement of the CPU run's costs, taken by the workers *before* any schedule.

Why: a profile taken in the parent process (one process, one layer called over and over)
misses what the real 2-process run pays.  Both ranks compute at the same time on a 2-core
machine (shared caches, memory bandwidth and clocks), a rank cycles through many layers so
their weights are not cache-hot, and pipeline data moves through gloo, whose latency the
simulator otherwise only guesses.  So each worker, right after joining the process group and
while the other rank does the same, measures

* every kernel island of the model shapes it runs, cycling through a whole stage's layers
  (encoder layers then LLM layers, forward then backward, as Megatron-LM's stage 0 does),
  at the run's own microbatch shape, with one torch thread; and
* the gloo P2P lag exactly as the interpreter pays it: the receiver is blocked in ``recv``
  when the sender stamps its ready time and sends; the lag is the receiver's clock after
  both ``recv`` calls minus the stamp (one host, one monotonic clock); and
* how late the interpreter's emulated-collective wait returns (its spin can be preempted).

The parent pools both ranks' samples, plans with the mean kernel times, and predicts each
schedule's iteration time by re-executing its task graph with kernel times drawn from the
measured samples (median over draws, because the run reports a median over iterations and a
static schedule's makespan is not linear in its kernel times: a kernel that overruns its
bubble delays the LLM, one that underruns does not give the time back).

Imports torch: only the CPU-run commands load this module.
"""

from __future__ import annotations

import dataclasses
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist

from mlsyskit.training.optimus.costmodel import Direction
from mlsyskit.training.optimus.cpu_model import (
    COMM,
    IslandLayer,
    LayerRun,
    kernel_names,
    run_bwd_kernel,
    run_fwd_kernel,
)
from mlsyskit.training.optimus.models import TransformerSpec
from mlsyskit.training.optimus.schedule import Resource, Schedule, Task

KernelKey = tuple[str, Direction, str]  # (model spec name, direction, island name)
Samples = dict[KernelKey, list[float]]


@dataclass(frozen=True)
class RunProfile:
    """Samples measured in situ (seconds): kernel islands and gloo P2P lags."""

    kernels: dict[KernelKey, tuple[float, ...]]
    p2p_lag: tuple[float, ...]
    wait_overshoot: tuple[float, ...] = (0.0,)

    def kernel_means(self) -> dict[str, dict[tuple[Direction, str], float]]:
        """Mean time per island, in the layout :class:`ProfiledCostModel` takes."""
        out: dict[str, dict[tuple[Direction, str], float]] = {}
        for (spec, direction, name), xs in self.kernels.items():
            out.setdefault(spec, {})[(direction, name)] = statistics.fmean(xs)
        return out

    @property
    def p2p_mean_s(self) -> float:
        return statistics.fmean(self.p2p_lag)


def merge(profiles: list[RunProfile]) -> RunProfile:
    """Pool the samples of several ranks (each rank measured under the same load)."""
    kernels: dict[KernelKey, list[float]] = {}
    lags: list[float] = []
    over: list[float] = []
    for p in profiles:
        for key, xs in p.kernels.items():
            kernels.setdefault(key, []).extend(xs)
        lags.extend(p.p2p_lag)
        over.extend(p.wait_overshoot)
    return RunProfile({k: tuple(v) for k, v in kernels.items()}, tuple(lags), tuple(over))


def _islands(direction: Direction) -> tuple[str, ...]:
    return tuple(n for n in kernel_names(direction) if n not in COMM)


def profile_stack(
    parts: list[tuple[TransformerSpec, int]], batch: int, seq: int, reps: int, seed: int,
) -> Samples:
    """Time every island while cycling through a stage of ``(spec, num_layers)`` groups.

    The first repetition is a warm-up (allocations, first touches) and is dropped.
    """
    torch.manual_seed(seed)
    layers = [(spec, IslandLayer(spec)) for spec, n in parts for _ in range(n)]
    hidden = parts[0][0].hidden
    out: Samples = {}
    for rep in range(reps + 1):
        runs: list[tuple[str, IslandLayer, LayerRun]] = []
        x = torch.randn(batch, seq, hidden)
        for spec, layer in layers:
            run = LayerRun(vals={"x": x})
            for name in _islands(Direction.FWD):
                t = time.perf_counter()
                run_fwd_kernel(layer, run, name)
                if rep:
                    out.setdefault((spec.name, Direction.FWD, name), []).append(
                        time.perf_counter() - t)
            runs.append((spec.name, layer, run))
            x = run.vals["out"]
        grad = torch.randn_like(x)
        for spec_name, _layer, run in reversed(runs):
            run.grads["out"] = grad
            for name in _islands(Direction.BWD):
                t = time.perf_counter()
                run_bwd_kernel(run, name)
                if rep:
                    out.setdefault((spec_name, Direction.BWD, name), []).append(
                        time.perf_counter() - t)
            grad = run.grads["x"]
    return out


def p2p_lags(rank: int, like: torch.Tensor, rounds: int) -> list[float]:
    """Gloo P2P lag as the interpreter sees it (both directions; this rank's receptions)."""
    lags: list[float] = []
    for r in range(rounds):
        sender = r % 2
        dist.barrier()
        if rank == sender:
            time.sleep(2e-3)  # the receiver is blocked in recv, as in the run
            ready = time.perf_counter()
            works = [dist.isend(like, 1 - rank, tag=9000 + 2 * r),
                     dist.isend(torch.tensor([ready], dtype=torch.float64), 1 - rank,
                                tag=9001 + 2 * r)]
            for w in works:
                if w is not None:
                    w.wait()
        else:
            buf, when = torch.empty_like(like), torch.empty(1, dtype=torch.float64)
            dist.recv(buf, 1 - rank, tag=9000 + 2 * r)
            dist.recv(when, 1 - rank, tag=9001 + 2 * r)
            if r >= 2:  # first round trip of each direction sets the connection up
                lags.append(time.perf_counter() - float(when.item()))
    return lags


def wait_overshoots(wait_s: float, n: int) -> list[float]:
    """How late the interpreter's emulated-collective wait returns (preemption while it
    spins: zero on an idle machine, whole time slices on a loaded one)."""
    from mlsyskit.training.optimus.cpu_exec import Interpreter

    out = []
    for _ in range(n):
        target = time.perf_counter() + wait_s
        Interpreter._wait_until(target)
        out.append(time.perf_counter() - target)
    return out


def measure_in_situ(rank: int, enc: TransformerSpec, llm: TransformerSpec, batch: int,
                    seq: int, reps: int, rounds: int, seed: int, wait_s: float
                    ) -> RunProfile:
    """What a worker measures before it receives its schedules (both ranks at once)."""
    dist.barrier()
    kernels = profile_stack([(enc, enc.num_layers), (llm, llm.num_layers // 2)], batch, seq,
                            reps, seed + rank)
    lags = p2p_lags(rank, torch.zeros(batch, seq, llm.hidden), rounds)
    dist.barrier()
    over = wait_overshoots(wait_s, 4 * rounds)
    return RunProfile({k: tuple(v) for k, v in kernels.items()}, tuple(lags), tuple(over))


def kernel_key(t: Task) -> KernelKey | None:
    """The island a compute task runs (names are ``spec/island``; see ProfiledCostModel)."""
    if t.resource is not Resource.COMPUTE or t.direction is None or "/" not in t.name:
        return None
    spec, name = t.name.split("/", 1)
    return spec, t.direction, name


def retimed_makespan(s: Schedule, duration: Callable[[Task], float | None]) -> float:
    """Re-execute ``s`` as soon as possible with new task durations (None keeps the plan)."""
    from mlsyskit.training.optimus.replay import reexecute

    tasks = []
    for t in s.tasks:
        d = duration(t)
        tasks.append(t if d is None else dataclasses.replace(t, end_s=t.start_s + d))
    times = reexecute(dataclasses.replace(s, tasks=tuple(tasks)))
    return max(e for _, e in times.values())


def sampled_makespan(s: Schedule, prof: RunProfile, draws: int, seed: int) -> float:
    """Median makespan over ``draws`` re-executions with kernel times drawn from ``prof``."""
    rng = random.Random(seed)

    def draw(t: Task) -> float | None:
        if t.resource is not Resource.COMPUTE:  # an emulated wait: it returns late
            return t.duration_s + rng.choice(prof.wait_overshoot)
        key = kernel_key(t)
        if key is None or key not in prof.kernels:
            return None
        return rng.choice(prof.kernels[key])

    return statistics.median(retimed_makespan(s, draw) for _ in range(draws))
