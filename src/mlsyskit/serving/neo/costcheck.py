"""Check NEO's cost model against what this machine measures.

The scheduler plans every step with per-layer tables and the simulator charges steps with
the same :func:`~mlsyskit.serving.neo.plan.step_time` arithmetic. Here the tables are
*measured* on the real executor (:func:`~mlsyskit.serving.neo.profiler.profile_tables`), the
same requests are served for real, and every step's predicted time is set against its
measured wall time. This tests the arithmetic the simulator relies on, including its claim
that a pipelined stage costs ``max(device, host)``: the host thread and the main thread each
get one core, so the overlap is real.

Sequential steps (device-only) check ``linr + pref + gdec`` summed over layers plus the LM
head; FastDecode+ steps (every decode on the host, pipelined) check the overlap model.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from mlsyskit.errors import BenchmarkError
from mlsyskit.serving.neo.cost import CostTables, LayerCosts
from mlsyskit.serving.neo.plan import ExecMode, NeoStepPlan, step_time
from mlsyskit.serving.neo.scheduler import NeoConfig, OffloadMode
from mlsyskit.serving.plan import StepPlan
from mlsyskit.serving.workload import RequestSpec


@dataclass(frozen=True)
class StepTimeErrors:
    """Predicted vs measured step times of one engine.

    ``*_rel_err`` are |predicted - measured| / measured over steps; ``total_ratio`` is
    sum(predicted) / sum(measured) (1 = no bias).
    """

    label: str
    num_steps: int
    #: steps with host decodes run pipelined (``None``: not counted, the simulator's check)
    num_pipelined: int | None
    median_rel_err: float
    p90_rel_err: float
    total_ratio: float
    #: median measured / predicted over pipelined steps that only decode (``None``: none ran)
    decode_pipelined_ratio: float | None = None


def _errors(pred: list[float], actual: list[float]) -> tuple[float, float, float]:
    """(median, P90) of |predicted - actual| / actual, and sum(predicted) / sum(actual)."""
    errs = sorted(abs(p - a) / a for p, a in zip(pred, actual, strict=True))
    return (statistics.median(errs), errs[min(len(errs) - 1, int(0.9 * len(errs)))],
            sum(pred) / sum(actual))


def step_errors(label: str, steps: list[tuple[StepPlan, float]], tables: LayerCosts,
                block_size: int) -> StepTimeErrors:
    """Compare ``step_time(plan, tables)`` with each measured duration."""
    if not steps:
        raise BenchmarkError(f"{label}: no step ran")
    pred = [step_time(p, tables, block_size) for p, _ in steps]
    meas = [m for _, m in steps]
    piped = [isinstance(p, NeoStepPlan) and p.mode is ExecMode.PIPELINED and any(p.on_host)
             for p, _ in steps]
    decode_ratios = [m / t for (p, m), t, pip in zip(steps, pred, piped, strict=True)
                     if pip and max(p.num_new_tokens) == 1 and t > 0]
    return StepTimeErrors(label, len(steps), sum(piped), *_errors(pred, meas),
                          statistics.median(decode_ratios) if decode_ratios else None)


@contextmanager
def _one_thread() -> Iterator[None]:
    """One intra-op thread: the main thread is 'the device', the host thread the other core."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def real_cost_check(
    model: str = "small", num_requests: int = 12, output_len: int = 24, seed: int = 0,
    repeats: int = 5,
) -> tuple[CostTables, list[StepTimeErrors]]:
    """Profile the real executor, serve the same requests device-only and FastDecode+.

    Both engines plan with (and are predicted by) the tables measured first; returns the
    tables and the errors of each engine.
    """
    from mlsyskit.serving.calibrate import RecordingExecutor
    from mlsyskit.serving.model import get_model_config
    from mlsyskit.serving.neo.profiler import profile_tables
    from mlsyskit.serving.neo.real import build_torch_engine
    from mlsyskit.serving.neo.torch_executor import NeoTorchExecutor, RecordingTorchExecutor
    from mlsyskit.serving.runner import random_prompt_ids, run_workload

    rng = random.Random(seed)
    specs = [RequestSpec(f"r{i}", 0.0, rng.randint(32, 160), output_len)
             for i in range(num_requests)]
    ids = random_prompt_ids(get_model_config(model).vocab_size, seed)
    out: list[StepTimeErrors] = []
    with _one_thread():
        probe = RecordingTorchExecutor.from_name(model, num_device_blocks=64,
                                                 num_host_blocks=64, seed=seed)
        tables = profile_tables(probe, repeats=repeats, ctx_x=(0, 64, 256, 1024, 2048),
                                linr_x=(1, 4, 16, 64, 256, 1024), pref_x=(16, 64, 256))
        for label, mode in (("device-only", OffloadMode.NONE),
                            ("fastdecode", OffloadMode.FASTDECODE)):
            engine = build_torch_engine(
                model, mode, seed=seed, tables=None if mode is OffloadMode.NONE else tables,
                neo=None if mode is OffloadMode.NONE else NeoConfig.paper(mode),
                num_device_blocks=256,
            )
            timed = RecordingExecutor(engine.executor)  # keeps steps without swaps
            engine.executor = timed
            try:
                run_workload(engine, specs, prompt_ids=ids, oracle_hints=False)
            finally:
                if isinstance(timed.inner, NeoTorchExecutor):
                    timed.inner.close()
            steps = [(plan, sample.duration_s)
                     for plan, sample in zip(timed.plans, timed.samples, strict=True)]
            out.append(step_errors(label, steps, tables, timed.block_size))
    return tables, out


def sim_prediction_errors(
    setup: str, specs: list[RequestSpec], neo: NeoConfig | None = None, seed: int = 0,
) -> StepTimeErrors:
    """Scheduler's predicted step times (interpolated tables) vs what the simulator charged.

    The tables are sampled from the same roofline the simulator charges, so this measures the
    interpolation error of NEO's profiling grids alone.
    """
    from mlsyskit.serving.neo.engine import build_sim_engine
    from mlsyskit.serving.neo.sim import NeoSimExecutor
    from mlsyskit.serving.runner import run_workload

    engine = build_sim_engine(setup, OffloadMode.NEO, seed=seed, neo=neo)
    run_workload(engine, specs, oracle_hints=False)
    ex = engine.executor
    assert isinstance(ex, NeoSimExecutor)
    pairs = [(p, c) for p, c in ex.predictions if c > 0]
    if not pairs:
        raise BenchmarkError(f"{setup}: no NEO step ran")
    return StepTimeErrors(f"sim {setup}", len(pairs), None,
                          *_errors([p for p, _ in pairs], [c for _, c in pairs]))
