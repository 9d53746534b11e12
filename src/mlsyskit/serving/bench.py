"""Benchmarks of the serving engine (``mlsyskit reproduce serving``).

- ``engine_vs_hf_throughput_ratio``: output tokens/s of this engine (continuous batching over a
  paged cache) over Hugging Face ``generate`` with static batches of the same size, same
  random weights, same 64 mixed-length requests, on this CPU.
- ``sim_fit_median_rel_err``: the cost model fitted to profiled steps of the real executor,
  scored on held-out steps recorded from a real engine run (re-timed, fastest of several).
- ``sim_requests_per_s``: simulated requests per wall-clock second, Llama-3-8B on an A10G.
- ``logits_max_abs_diff_vs_hf``: the paged model against ``transformers`` Llama, same weights.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from mlsyskit.results import BenchResult
from mlsyskit.serving.metrics import Summary, plot_latency_vs_load, summarize
from mlsyskit.serving.workload import (
    LengthDistribution,
    LengthKind,
    RequestSpec,
    synthetic_workload,
)

console = Console(stderr=True)

#: the throughput comparison's request mix (prompt and output tokens), kept small for a CPU
HF_PROMPT = LengthDistribution(LengthKind.LOGNORMAL, mean=48, low=8, high=160, sigma=0.6)
HF_OUTPUT = LengthDistribution(LengthKind.LOGNORMAL, mean=48, low=4, high=192, sigma=0.8)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch threads, restoring the previous setting."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _prompt_ids(specs: Sequence[RequestSpec], vocab: int, seed: int) -> dict[str, list[int]]:
    from mlsyskit.serving.runner import random_prompt_ids

    make = random_prompt_ids(vocab, seed)
    return {s.request_id: make(s) for s in specs}


@dataclass(frozen=True)
class Timed:
    """Output tokens served and the wall and process-CPU seconds it took."""

    tokens: int
    wall_s: float
    cpu_s: float


@contextmanager
def _timer(box: list[float]) -> Iterator[None]:
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    box[:] = [time.perf_counter() - wall, time.process_time() - cpu]


def engine_throughput(
    model_name: str, specs: Sequence[RequestSpec], batch_size: int, seed: int = 0
) -> Timed:
    """The engine serving ``specs`` offline (after a two-request warm-up run)."""
    from mlsyskit.serving.engine import Engine
    from mlsyskit.serving.executor.torch_executor import TorchExecutor
    from mlsyskit.serving.model import get_model_config
    from mlsyskit.serving.policy import FCFSPolicy
    from mlsyskit.serving.runner import run_workload
    from mlsyskit.serving.scheduler import SchedulerConfig

    need = sum(-(-(s.num_prompt_tokens + s.num_output_tokens) // 16) for s in specs)
    executor = TorchExecutor.from_name(model_name, num_device_blocks=need, num_host_blocks=0,
                                       block_size=16, seed=seed)
    config = SchedulerConfig(max_num_seqs=batch_size, max_num_batched_tokens=1024)
    ids = _prompt_ids(specs, get_model_config(model_name).vocab_size, seed)
    warm = [replace(s, request_id=f"warm-{s.request_id}", num_output_tokens=4) for s in specs[:2]]
    run_workload(Engine(executor, FCFSPolicy(), config), warm,
                 prompt_ids=lambda s: ids[s.request_id.removeprefix("warm-")])
    engine = Engine(executor, FCFSPolicy(), config)
    box: list[float] = []
    with _timer(box):
        metrics = run_workload(engine, specs, prompt_ids=lambda s: ids[s.request_id])
    return Timed(sum(m.num_output_tokens for m in metrics), box[0], box[1])


def hf_static_throughput(
    model_name: str, specs: Sequence[RequestSpec], batch_size: int, seed: int = 0
) -> Timed:
    """HF ``generate`` on static batches (after a warm-up call); useful tokens only.

    Requests go in arrival order in batches of ``batch_size``; prompts are left-padded and
    every batch decodes until its longest request is done (the cost of static batching).
    """
    import torch

    from mlsyskit.serving.model import PagedLlama, get_model_config, to_hf_llama

    config = get_model_config(model_name)
    hf: Any = to_hf_llama(PagedLlama(config, seed=seed))  # generate() is loosely typed
    ids = _prompt_ids(specs, config.vocab_size, seed)
    pad = 0

    def generate(batch: Sequence[RequestSpec], new: int) -> None:
        longest = max(s.num_prompt_tokens for s in batch)
        input_ids = torch.full((len(batch), longest), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, s in enumerate(batch):
            p = ids[s.request_id]
            input_ids[row, longest - len(p):] = torch.tensor(p)
            mask[row, longest - len(p):] = 1
        out = hf.generate(
            input_ids=input_ids, attention_mask=mask, max_new_tokens=new,
            min_new_tokens=new, do_sample=False, pad_token_id=pad, eos_token_id=None,
        )
        assert out.shape[1] == longest + new

    box: list[float] = []
    with torch.no_grad():
        generate(specs[:2], 4)  # warm-up
        with _timer(box):
            for k in range(0, len(specs), batch_size):
                batch = specs[k:k + batch_size]
                generate(batch, max(s.num_output_tokens for s in batch))
    return Timed(sum(s.num_output_tokens for s in specs), box[0], box[1])


def throughput_ratio(quick: bool, notes: list[str]) -> dict[str, float]:
    """Engine vs HF output tokens per second of CPU time (single-threaded, no sleeping).

    Both sides run in this process with one torch thread and never sleep, so process CPU time
    is their busy time; it equals wall time on an idle machine and, unlike wall time, does
    not count other processes holding the shared cores.
    """
    model_name, batch_size, n = "small", 16, 64
    specs = synthetic_workload(n, math.inf, prompt=HF_PROMPT, output=HF_OUTPUT, seed=7)
    with torch_threads(1):
        eng = engine_throughput(model_name, specs, batch_size)
        hf = hf_static_throughput(model_name, specs, batch_size)
    notes.append(
        f"throughput: {n} requests (prompts {min(s.num_prompt_tokens for s in specs)}-"
        f"{max(s.num_prompt_tokens for s in specs)}, outputs "
        f"{min(s.num_output_tokens for s in specs)}-{max(s.num_output_tokens for s in specs)} "
        f"tokens, {eng.tokens} in all), model 'small' with random weights, batch {batch_size}, "
        "1 torch thread, outputs counted without EOS; tokens per CPU second: engine "
        f"{eng.cpu_s:.2f} s, HF generate (static batches) {hf.cpu_s:.2f} s of CPU time "
        f"(wall {eng.wall_s:.2f} s and {hf.wall_s:.2f} s, wall ratio "
        f"{hf.wall_s / eng.wall_s:.2f})"
    )
    return {
        "engine_vs_hf_throughput_ratio": hf.cpu_s / eng.cpu_s,
        "engine_output_tokens_per_s": eng.tokens / eng.cpu_s,
        "hf_generate_output_tokens_per_s": hf.tokens / hf.cpu_s,
    }


def calibration(quick: bool, out_dir: Path, notes: list[str], plots: list[str]) -> dict[str, float]:
    """Fit on profiled shapes; score on re-timed steps of a real engine run (held out)."""
    import random

    from mlsyskit.serving.calibrate import (
        RecordingExecutor,
        fit_cost_params,
        make_profile_executor,
        measure_swap_s_per_byte,
        profile_steps,
        relative_errors,
        time_plans,
    )
    from mlsyskit.serving.clock import SimClock
    from mlsyskit.serving.engine import Engine
    from mlsyskit.serving.executor.cost_model import CostModel
    from mlsyskit.serving.executor.sim import SimExecutor
    from mlsyskit.serving.model import get_model_config
    from mlsyskit.serving.policy import FCFSPolicy
    from mlsyskit.serving.runner import random_prompt_ids, run_workload
    from mlsyskit.serving.scheduler import SchedulerConfig

    model_name = "small"
    num_shapes, repeats, num_requests, num_held = (48, 5, 24, 40) if quick else (120, 7, 64, 100)
    with torch_threads(1):
        ex = make_profile_executor(model_name)
        train = profile_steps(model_name, num_samples=num_shapes, repeats=repeats, executor=ex)
        link = measure_swap_s_per_byte(ex)
        fit = fit_cost_params(model_name, train, s_per_link_byte=link)
        # held out: the steps a real engine run makes, on a different workload (all requests
        # at 0, so the run's CPU time is its busy time: no sleeping between arrivals)
        recorder = RecordingExecutor(ex)
        config = SchedulerConfig(max_num_seqs=16, max_num_batched_tokens=256)
        engine = Engine(recorder, FCFSPolicy(), config)
        specs = synthetic_workload(num_requests, math.inf, prompt=HF_PROMPT, output=HF_OUTPUT,
                                   seed=11)
        cpu_started = time.process_time()
        run_workload(engine, specs,
                     prompt_ids=random_prompt_ids(get_model_config(model_name).vocab_size, 11))
        real_cpu_s = time.process_time() - cpu_started
        plans = recorder.plans
        picked = sorted(random.Random(3).sample(range(len(plans)), min(num_held, len(plans))))
        held = time_plans(ex, [plans[i] for i in picked], repeats=repeats + 2)
    cost = CostModel(get_model_config(model_name), fit.params)
    errors = relative_errors(cost, held)
    # the same run on the simulated clock with the fitted constants: two clocks, one code path
    sim_ex = SimExecutor(cost, num_device_blocks=ex.num_device_blocks,
                         num_host_blocks=ex.num_host_blocks, block_size=ex.block_size,
                         padded_attention=True)
    sim_engine = Engine(sim_ex, FCFSPolicy(), config, SimClock())
    run_workload(sim_engine, specs)
    sim_s = sim_engine.clock.now()
    fit.params.to_json(out_dir / "serving_cost_fit.json", model=model_name, **fit.report(),
                       held_out_median_rel_err=statistics.median(errors))
    _plot_fit(cost, train, held, out_dir / "serving_cost_fit.png")
    plots.append("serving_cost_fit.png")
    notes.append(
        f"cost fit: {len(train)} profiled step shapes (fastest of {repeats} by process CPU "
        "time, 1 torch thread) "
        f"-> train median rel. error {fit.train_median_rel_err:.3f}; held out: {len(held)} "
        f"steps of a real {num_requests}-request engine run, re-timed (fastest of {repeats + 2}); "
        "fitted "
        f"constants in serving_cost_fit.json"
    )
    notes.append(
        f"sim vs real: the {num_requests}-request run took {real_cpu_s:.2f} s of CPU time for "
        f"real (scheduler included) and {sim_s:.2f} s on the simulated clock with the fit"
    )
    return {"sim_fit_median_rel_err": statistics.median(errors),
            "sim_fit_train_median_rel_err": fit.train_median_rel_err,
            "sim_vs_real_run_time_ratio": sim_s / real_cpu_s}


def _plot_fit(cost: object, train: Sequence[object], held: Sequence[object], path: Path) -> None:
    from mlsyskit.report.plotting import new_figure, save_figure
    from mlsyskit.serving.calibrate import StepSample
    from mlsyskit.serving.executor.cost_model import CostModel

    assert isinstance(cost, CostModel)
    fig = new_figure(4.5, 4.0)
    ax = fig.subplots()
    for samples, label in ((train, "profiled (fit)"), (held, "engine steps (held out)")):
        xs, ys = [], []
        for s in samples:
            assert isinstance(s, StepSample)
            xs.append(s.duration_s * 1e3)
            ys.append(cost.step_time(s.num_tokens, s.num_seqs, s.sum_context,
                                     s.attention_pairs, num_prefill_seqs=s.num_prefill_seqs)
                      * 1e3)
        ax.scatter(xs, ys, s=12, label=label)
    lo = min(ax.get_xlim()[0], ax.get_ylim()[0])
    hi = max(ax.get_xlim()[1], ax.get_ylim()[1])
    ax.plot([lo, hi], [lo, hi], color="grey", linewidth=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("measured step time (ms)")
    ax.set_ylabel("cost model (ms)")
    ax.legend()
    save_figure(fig, path)


def sim_speed(quick: bool, notes: list[str]) -> dict[str, float]:
    from mlsyskit.serving.engine import build_engine
    from mlsyskit.serving.runner import run_workload

    n = 3000 if quick else 10_000
    rate = 3.0
    specs = synthetic_workload(n, rate, seed=5)
    started = time.perf_counter()
    cpu_started = time.process_time()
    engine = build_engine("llama-3-8b", "fcfs", executor="sim", hardware="a10g",
                          max_num_seqs=256, max_num_batched_tokens=2048)
    metrics = run_workload(engine, specs)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    summary = summarize(metrics)
    stats = engine.stats()
    notes.append(
        f"simulator speed: {n} requests"
        + (" (quick; the full run uses 10,000)" if quick else "")
        + f", Llama-3-8B on an A10G, Poisson {rate} req/s, {stats.num_steps} steps in "
        f"{wall:.2f} s of wall time ({cpu:.2f} s of CPU time); simulated "
        f"{summary.output_tokens_per_s:.0f} output tok/s, "
        f"mean latency {summary.latency_s.mean:.1f} s"
    )
    return {
        "sim_requests_per_s": n / wall,
        "sim_a10g_llama3_8b_output_tokens_per_s": summary.output_tokens_per_s,
    }


def latency_vs_load(
    rates: Sequence[float], num_requests: int, *, hardware: str = "a10g",
    model: str = "llama-3-8b", policies: Sequence[str] = ("fcfs", "sjf"), seed: int = 0,
    num_device_blocks: int | None = None,
    max_num_seqs: int = 32,
) -> dict[str, list[tuple[float, Summary]]]:
    """Simulated summaries per policy and rate (the load-latency curve).

    The default cap of 32 running requests makes requests queue near saturation, which is
    where the order a policy picks matters (with ample batch room FCFS and SJF coincide).
    """
    from mlsyskit.serving.engine import build_engine
    from mlsyskit.serving.runner import run_workload

    series: dict[str, list[tuple[float, Summary]]] = {}
    for policy in policies:
        for rate in rates:
            engine = build_engine(model, policy, executor="sim", hardware=hardware,
                                  max_num_seqs=max_num_seqs, max_num_batched_tokens=2048,
                                  num_device_blocks=num_device_blocks)
            specs = synthetic_workload(num_requests, rate, seed=seed)
            series.setdefault(policy, []).append((rate, summarize(run_workload(engine, specs))))
    return series


def reproduce(quick: bool, out_dir: Path) -> BenchResult:
    """Run the serving benchmarks (see the module docstring)."""
    from mlsyskit.serving.model import max_logit_diff_vs_hf

    out_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    plots: list[str] = []
    metrics: dict[str, float] = {}
    console.print("serving: logits parity with transformers")
    metrics["logits_max_abs_diff_vs_hf"] = max_logit_diff_vs_hf("small", seed=0)
    notes.append("logits parity: model 'small' (random float32 weights), 3 sequences mixing "
                 "prefill and decode steps over a paged cache vs transformers LlamaForCausalLM")
    console.print("serving: simulator speed")
    metrics.update(sim_speed(quick, notes))
    console.print("serving: engine vs HF generate throughput")
    metrics.update(throughput_ratio(quick, notes))
    console.print("serving: cost-model calibration")
    metrics.update(calibration(quick, out_dir, notes, plots))
    console.print("serving: latency vs load (simulated)")
    rates = [1.0, 2.0, 3.0, 3.5, 4.0] if quick else [1.0, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5]
    series = latency_vs_load(rates, 400 if quick else 2000)
    plot_latency_vs_load(series, out_dir / "serving_latency_vs_load.png",
                         title="Llama-3-8B on A10G (simulated)")
    plots.append("serving_latency_vs_load.png")
    top = series["fcfs"][-1][1], series["sjf"][-1][1]
    metrics["sim_sjf_over_fcfs_mean_latency_at_top_rate"] = (
        top[1].latency_s.mean / top[0].latency_s.mean
    )
    notes.append(f"latency vs load: FCFS and oracle SJF at {rates} req/s, "
                 f"{400 if quick else 2000} requests each, at most 32 running, simulated A10G")
    return BenchResult(
        metrics=metrics,
        paper={
            "engine_vs_hf_throughput_ratio": "vLLM: up to 24x HF (GPU, large batches)",
            "sim_fit_median_rel_err": "Vidur: < 9% error on iteration time",
        },
        targets={
            "engine_vs_hf_throughput_ratio": ">= 2.0",
            "sim_fit_median_rel_err": "<= 0.15",
            "sim_requests_per_s": ">= 1000",
            "logits_max_abs_diff_vs_hf": "<= 1e-4",
        },
        simulated=["sim_a10g_llama3_8b_output_tokens_per_s", "sim_vs_real_run_time_ratio",
                   "sim_sjf_over_fcfs_mean_latency_at_top_rate"],
        notes=notes,
        plots=plots,
    )
