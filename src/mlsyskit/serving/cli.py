"""``mlsyskit serve``: benchmark the engine (real or simulated) and calibrate its cost model.

The HTTP server (owned by the server module) registers its own command on :data:`app`, see the
marked spot at the bottom of this file.
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated

import typer

from mlsyskit.clikit import console, new_app
from mlsyskit.errors import ConfigError
from mlsyskit.serving.engine import ExecutorKind
from mlsyskit.serving.neo.scheduler import OffloadMode
from mlsyskit.serving.policy import PolicyName

app = new_app("Serve LLM requests: benchmark the engine, calibrate its simulator, run a server.")


class PreemptionMode(enum.Enum):
    SWAP = "swap"
    RECOMPUTE = "recompute"


@app.command("bench")
def bench(
    executor: Annotated[ExecutorKind, typer.Option(help="Real PyTorch model or simulator.")] = (
        ExecutorKind.SIM
    ),
    model: Annotated[
        str | None,
        typer.Option(help="Model preset (default: small for torch, llama-3-8b for sim)."),
    ] = None,
    hardware: Annotated[str, typer.Option(help="Catalogue GPU for the simulator.")] = "a10g",
    tp: Annotated[int, typer.Option(help="Tensor-parallel degree (simulator).")] = 1,
    workload: Annotated[
        str,
        typer.Option(
            help="poisson | gamma | alpaca | augmented | trace:PATH (.jsonl or .json trace)."
        ),
    ] = "poisson",
    rate: Annotated[
        float, typer.Option(help="Arrival rate in requests/s ('inf': all at 0).")
    ] = 2.0,
    num_requests: Annotated[int, typer.Option(help="Requests to serve.")] = 200,
    policy: Annotated[PolicyName, typer.Option(help="Scheduling policy.")] = PolicyName.FCFS,
    preemption: Annotated[
        PreemptionMode | None,
        typer.Option(help="What preemption does with the KV cache (default: recompute; swap "
                     "with --offload)."),
    ] = None,
    max_num_seqs: Annotated[int, typer.Option(help="Requests per batch at most.")] = 256,
    max_num_batched_tokens: Annotated[int, typer.Option(help="Token budget per step.")] = 2048,
    num_device_blocks: Annotated[
        int | None, typer.Option(help="Device KV blocks (default: from memory).")
    ] = None,
    cost_params: Annotated[
        Path | None, typer.Option(help="Fitted cost constants from `serve profile`.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of arrivals, lengths and weights.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Write summary + per-request JSON here.")] = None,
    offload: Annotated[
        OffloadMode | None,
        typer.Option(help="Serve with NEO's engine: neo (partial offload of decode attention "
                     "to the host CPU), fastdecode (all of it) or none (its device-only "
                     "baseline). Default: the plain engine."),
    ] = None,
    host_cpu: Annotated[
        str | None, typer.Option(help="Catalogue host CPU of the simulated GPU (with --offload).")
    ] = None,
) -> None:
    """Serve a workload and print throughput and latency (TTFT, TPOT, end to end)."""
    import time

    from rich.table import Table

    from mlsyskit.serving.engine import build_engine
    from mlsyskit.serving.metrics import summarize, write_metrics_json
    from mlsyskit.serving.neo import routing
    from mlsyskit.serving.policy import KVAction
    from mlsyskit.serving.runner import random_prompt_ids, run_workload
    from mlsyskit.serving.workload import make_workload

    if model is None:
        model = "small" if executor is ExecutorKind.TORCH else "llama-3-8b"
    kv = KVAction.SWAP if preemption is PreemptionMode.SWAP else KVAction.DISCARD
    if offload is not None:  # fail fast, before any trace is loaded
        routing.check_workload_name(offload, workload)
    specs = make_workload(workload, num_requests, rate, seed=seed)
    if offload is not None:  # NEO's engines (mlsyskit/serving/neo/routing.py)
        engine = routing.build_for_bench(
            offload, executor=executor.value, model=model, hardware=hardware, tp=tp,
            host_cpu=host_cpu, policy=policy.value,
            preemption=None if preemption is None else preemption.value,
            cost_params=cost_params, num_device_blocks=num_device_blocks,
            max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens,
            specs=specs, seed=seed,
        )
    else:
        if host_cpu is not None:
            raise ConfigError("--host-cpu is only used with --offload")
        engine = build_engine(
            model, policy, executor=executor, hardware=hardware, tp=tp,
            num_device_blocks=num_device_blocks, max_num_seqs=max_num_seqs,
            max_num_batched_tokens=max_num_batched_tokens, cost_params_path=cost_params,
            seed=seed, policy_kwargs={"preemption": kv},
        )
    ids = None
    if executor is ExecutorKind.TORCH:
        from mlsyskit.serving.model import get_model_config

        ids = random_prompt_ids(get_model_config(model).vocab_size, seed)
    started = time.perf_counter()
    try:
        metrics = run_workload(engine, specs, prompt_ids=ids, progress=True)
    finally:  # NEO's host thread stops also on error or Ctrl-C
        if offload is not None:
            routing.close(engine)
    wall = time.perf_counter() - started
    summary = summarize(metrics)
    stats = engine.stats()
    table = Table(title=f"{model} on {executor.value}"
                  + (f" ({tp}x {hardware})" if executor is ExecutorKind.SIM else " (this CPU)")
                  + (f", offload {offload.value}" if offload is not None else ""))
    for column in ("metric", "mean", "p50", "p99"):
        table.add_column(column)
    for name in ("ttft_s", "tpot_s", "latency_s", "normalized_latency_s"):
        stat = getattr(summary, name)
        table.add_row(name, f"{stat.mean:.4g}", f"{stat.p50:.4g}", f"{stat.p99:.4g}")
    console.print(table)
    clock = "simulated" if executor is ExecutorKind.SIM else "wall"
    console.print(
        f"{summary.num_requests} requests in {summary.duration_s:.4g} s ({clock} clock): "
        f"{summary.requests_per_s:.4g} req/s, {summary.output_tokens_per_s:.4g} output tok/s; "
        f"{stats.num_preemptions} preemptions; ran in {wall:.2f} s of wall time",
        highlight=False,
    )
    extra: dict[str, object] = {}
    if offload is not None:
        line = routing.describe(engine)
        if line is not None:
            console.print(line, highlight=False)
        extra = {"offload": offload.value, "host_cpu": host_cpu}
    if out is not None:
        write_metrics_json(out, summary, metrics, model=model, executor=executor.value,
                           hardware=hardware, tp=tp, workload=workload, rate=rate,
                           policy=policy.value, wall_s=wall, **extra)
        console.print(f"wrote {out}")


@app.command("profile")
def profile(
    model: Annotated[str, typer.Option(help="Model preset to run for real.")] = "small",
    out: Annotated[Path, typer.Option(help="Where to write the fitted constants (JSON).")] = Path(
        "bench/results/serving-cost-fit.json"
    ),
    num_samples: Annotated[int, typer.Option(help="Measured step shapes.")] = 60,
    repeats: Annotated[int, typer.Option(help="Timed repeats per shape (median kept).")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of shapes and weights.")] = 0,
    threads: Annotated[int, typer.Option(help="Torch threads while profiling.")] = 1,
) -> None:
    """Time the real executor over step shapes and fit the cost model's constants to it."""
    from mlsyskit.serving.bench import torch_threads
    from mlsyskit.serving.calibrate import fit_cost_params, profile_steps, split_holdout

    with torch_threads(threads):
        samples = profile_steps(model, num_samples=num_samples, repeats=repeats, seed=seed,
                                progress=True)
    train, test = split_holdout(samples, seed=seed)
    fit = fit_cost_params(model, train, test)
    fit.params.to_json(out, model=model, threads=threads, **fit.report())
    console.print(json.dumps(fit.report(), indent=1))
    console.print(f"wrote {out}")


# --- the HTTP server (owned by serving/server/) registers here -------------------------------
# `mlsyskit serve run --model tiny --policy fcfs --port 8000`; the command lives in
# mlsyskit/serving/server/cli.py and builds its engine with mlsyskit.serving.engine.build_engine.
from mlsyskit.serving.server.cli import serve_run  # noqa: E402

app.command("run")(serve_run)


@app.callback(invoke_without_command=True)
def serve_default(
    ctx: typer.Context,
    model: Annotated[
        str | None, typer.Option(help="Without a subcommand: serve this preset over HTTP.")
    ] = None,
    policy: Annotated[PolicyName, typer.Option(help="Scheduling policy.")] = PolicyName.FCFS,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    checkpoint: Annotated[
        Path | None, typer.Option(help="Local Hugging Face Llama directory to serve.")
    ] = None,
    offload: Annotated[
        OffloadMode | None, typer.Option(help="Serve with NEO's engine (see `serve run`).")
    ] = None,
) -> None:
    """`mlsyskit serve --model tiny [--policy fcfs] [--port 8000]` is `mlsyskit serve run ...`."""
    if ctx.invoked_subcommand is not None:
        return
    serve_run(model=model or "tiny", policy=policy, host=host, port=port, checkpoint=checkpoint,
              offload=offload)

# NEO's commands (`mlsyskit serve neo bench --offload neo|none|fastdecode ...`)
from mlsyskit.serving.neo.cli import app as neo_app  # noqa: E402

app.add_typer(neo_app, name="neo")
