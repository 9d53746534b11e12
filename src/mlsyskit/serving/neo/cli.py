"""``mlsyskit serve neo ...``: NEO's commands, registered onto the ``serve`` group.

* ``serve neo bench``: serve a workload with ``--offload neo|none|fastdecode`` on a simulated
  paper setup, or on the real executor (``--executor torch``);
* ``serve neo sweep``: load-vs-latency curves and sustainable rates, with a plot;
* ``serve neo parity``: pipelined NEO vs sequential device-only logits on the real executor;
* ``serve neo profile``: measure the per-layer cost tables on this machine (``--tables`` uses
  them);
* ``serve neo setups``: the simulated setups and their host-attention speeds.
"""

from __future__ import annotations

import enum
import math
from pathlib import Path
from typing import Annotated

import typer

from mlsyskit.clikit import console, new_app
from mlsyskit.serving.neo.scheduler import OffloadMode
from mlsyskit.serving.neo.workloads import NeoWorkload

app = new_app("NEO: offload decode attention and KV cache to the host CPU.")


class Executor(enum.Enum):
    SIM = "sim"
    TORCH = "torch"


@app.command("bench")
def bench(
    offload: Annotated[OffloadMode, typer.Option(help="Where decode attention runs.")] = (
        OffloadMode.NEO
    ),
    executor: Annotated[Executor, typer.Option(help="Simulated setup or real model.")] = (
        Executor.SIM
    ),
    setup: Annotated[str, typer.Option(help="Simulated setup (see `serve neo setups`).")] = (
        "t4-7b"
    ),
    workload: Annotated[NeoWorkload, typer.Option(help="Request lengths.")] = (
        NeoWorkload.SUMMARIZATION
    ),
    output_len: Annotated[int, typer.Option(help="Output length (synthetic workload).")] = 200,
    rate: Annotated[float, typer.Option(help="Poisson rate in req/s ('inf': all at 0).")] = 1.0,
    num_requests: Annotated[int, typer.Option(help="Requests to serve.")] = 200,
    model: Annotated[str, typer.Option(help="Model preset for --executor torch.")] = "small",
    tables: Annotated[
        Path | None, typer.Option(help="Cost tables the scheduler plans with (`neo profile`).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of arrivals, lengths and weights.")] = 0,
    paper_rules: Annotated[
        bool, typer.Option(help="The paper's exact rules (throughput mode choice, no latency "
                           "guards) instead of the defaults.")
    ] = False,
    step_slo_ms: Annotated[
        float | None, typer.Option(help="--offload neo: a step latency target (ms, device "
                                   "time of the layers); no pipelined step predicted longer "
                                   "(NeoConfig.slo).")
    ] = None,
    chunk_tokens: Annotated[
        int | None, typer.Option(help="--offload none, simulated: chunked-prefill token budget "
                                 "per step (256 / 512: the paper's vLLM baselines).")
    ] = None,
    recompute: Annotated[
        bool, typer.Option(help="--offload none, simulated: preemption discards the KV and "
                           "recomputes it instead of swapping.")
    ] = False,
) -> None:
    """Serve one workload and print latency, throughput and NEO's decisions."""
    import numpy as np

    from mlsyskit.errors import ConfigError
    from mlsyskit.serving.neo.cost import CostTables
    from mlsyskit.serving.neo.loadtest import per_token_latencies
    from mlsyskit.serving.neo.scheduler import NeoConfig, NeoScheduler
    from mlsyskit.serving.neo.workloads import neo_workload
    from mlsyskit.serving.runner import random_prompt_ids, run_workload

    if executor is not Executor.SIM and (chunk_tokens is not None or recompute):
        raise ConfigError("--chunk-tokens and --recompute apply to --executor sim only")
    planned = CostTables.from_json(tables) if tables is not None else None
    if paper_rules and step_slo_ms is not None:
        raise ConfigError("--paper-rules and --step-slo-ms are two rule sets; choose one")
    _check_slo_ms(step_slo_ms)
    rules = NeoConfig.paper() if paper_rules else None
    if step_slo_ms is not None:
        rules = NeoConfig.slo(step_slo_ms / 1e3)
    if executor is Executor.SIM:
        from mlsyskit.serving.neo.engine import DeviceOnly, build_sim_engine
        from mlsyskit.serving.policy import KVAction

        base = (DeviceOnly(chunk_tokens, KVAction.DISCARD if recompute else KVAction.SWAP)
                if chunk_tokens is not None or recompute else None)
        engine = build_sim_engine(setup, offload, tables=planned, seed=seed, neo=rules,
                                  device_only=base)
        ids = None
        where = f"simulated {setup}"
    else:
        from mlsyskit.serving.model import get_model_config
        from mlsyskit.serving.neo.real import build_torch_engine

        engine = build_torch_engine(model, offload, tables=planned, seed=seed, neo=rules)
        ids = random_prompt_ids(get_model_config(model).vocab_size, seed)
        where = f"real {model} on this CPU"
        # paper-length prompts do not fit a small random model: short synthetic requests
        workload, output_len = NeoWorkload.SYNTHETIC, min(output_len, 16)
        console.print(f"real executor: synthetic requests, prompts ~48 tokens, outputs "
                      f"~{output_len}", highlight=False)
    specs = neo_workload(workload, num_requests, rate, output_len=output_len,
                         input_len=48 if executor is Executor.TORCH else 1000, seed=seed)
    metrics = run_workload(engine, specs, prompt_ids=ids, oracle_hints=False, progress=True)
    ptl = per_token_latencies(metrics)
    span = max(m.finish_s for m in metrics) - min(m.arrival_s for m in metrics)
    console.print(
        f"{offload.value} on {where}: {len(metrics)} requests at "
        f"{'offline' if math.isinf(rate) else f'{rate:g} req/s'}; throughput "
        f"{len(metrics) / span:.3f} req/s; per-token latency mean {np.mean(ptl) * 1e3:.2f} ms, "
        f"P90 {np.percentile(ptl, 90) * 1e3:.2f} ms",
        highlight=False,
    )
    if isinstance(engine.scheduler, NeoScheduler):
        c = engine.scheduler.neo_counters()
        console.print(
            f"steps: {c.num_pipelined_steps} pipelined, {c.num_sequential_steps} sequential; "
            f"decodes: {c.num_host_decodes} on the host, {c.num_device_decodes} on the device; "
            f"{c.num_swap_ins} swap-ins", highlight=False,
        )
    close = getattr(engine.executor, "close", None)
    if close is not None:
        close()


@app.command("sweep")
def sweep(
    setup: Annotated[str, typer.Option(help="Simulated setup.")] = "t4-7b",
    workload: Annotated[NeoWorkload, typer.Option(help="Request lengths.")] = (
        NeoWorkload.SUMMARIZATION
    ),
    output_len: Annotated[int, typer.Option(help="Output length (synthetic workload).")] = 200,
    num_requests: Annotated[int, typer.Option(help="Requests per load point.")] = 200,
    fastdecode: Annotated[bool, typer.Option(help="Also sweep FastDecode+.")] = False,
    baselines: Annotated[
        bool, typer.Option(help="Also sweep the paper's vLLM-256/-512 (device-only, chunked "
                           "prefill) and device-only with recompute preemption.")
    ] = False,
    paper_rules: Annotated[
        bool, typer.Option(help="Also sweep NEO under the paper's exact rules (neo-paper).")
    ] = False,
    bound_factor: Annotated[
        float, typer.Option(help="Latency bound: this x device-only's P90 at its lightest "
                            "load point.")
    ] = 2.0,
    step_slo_ms: Annotated[
        float | None, typer.Option(help="Also sweep NEO with a step latency target (ms, "
                                   "device time of the layers; neo-slo: NeoConfig.slo).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Plot to write.")] = Path("neo_sweep.png"),
) -> None:
    """Load-vs-latency curves of NEO and device-only, and their sustainable rates."""
    from mlsyskit.errors import ConfigError
    from mlsyskit.serving.neo.bench import PAPER_NEO, _maker, plot_curves
    from mlsyskit.serving.neo.engine import get_setup
    from mlsyskit.serving.neo.loadtest import RECOMPUTE, VLLM_256, VLLM_512, System, compare
    from mlsyskit.serving.neo.scheduler import NeoConfig

    if not 1 < bound_factor < math.inf:
        raise ConfigError(f"--bound-factor must be a finite number > 1; got {bound_factor}")
    _check_slo_ms(step_slo_ms)
    systems: list[OffloadMode | System] = [OffloadMode.NONE, OffloadMode.NEO]
    if paper_rules:
        systems.append(PAPER_NEO)
    if step_slo_ms is not None:
        systems.append(System(OffloadMode.NEO, "neo-slo", neo=NeoConfig.slo(step_slo_ms / 1e3)))
    if fastdecode:
        systems.append(OffloadMode.FASTDECODE)
    if baselines:
        systems += [VLLM_256, VLLM_512, RECOMPUTE]
    comp = compare(get_setup(setup), _maker(workload, output_len), workload=workload.value,
                   systems=systems, num_requests=num_requests, bound_factor=bound_factor)
    for name, rate in comp.rates.items():
        console.print(f"{name}: sustainable {rate:.3f} req/s at P90 per-token latency "
                      f"<= {comp.bound_s * 1e3:.2f} ms ({rate / comp.rates['none']:.3f}x "
                      "device-only)", highlight=False)
    plot_curves([comp], out, f"{setup} (simulated)")
    console.print(f"wrote {out}")


def _check_slo_ms(step_slo_ms: float | None) -> None:
    from mlsyskit.errors import ConfigError

    if step_slo_ms is not None and not 0 < step_slo_ms < math.inf:
        raise ConfigError(f"--step-slo-ms must be a finite number of milliseconds > 0; got "
                          f"{step_slo_ms}")


@app.command("parity")
def parity(
    model: Annotated[str, typer.Option(help="Model preset (random weights).")] = "small",
    num_requests: Annotated[int, typer.Option(help="Greedy requests.")] = 8,
) -> None:
    """Compare NEO's pipelined logits with the device-only engine's on the real executor."""
    from mlsyskit.serving.neo.real import pipelined_parity

    r = pipelined_parity(model, num_requests)
    console.print(
        f"max |logit diff| {r.max_abs_logit_diff:.3g} over {r.num_tokens_compared} tokens; "
        f"same greedy tokens: {r.same_tokens}; {r.num_pipelined_steps} pipelined steps, "
        f"{r.num_host_decodes} host decodes", highlight=False,
    )


@app.command("profile")
def profile(
    model: Annotated[str, typer.Option(help="Model preset (random weights).")] = "small",
    out: Annotated[Path, typer.Option(help="Where to write the tables (JSON).")] = Path(
        "neo-tables.json"
    ),
    repeats: Annotated[int, typer.Option(help="Timed repeats per point (median).")] = 3,
) -> None:
    """Measure NEO's per-layer cost tables on the real executor of this machine."""
    from mlsyskit.serving.executor.torch_executor import TorchExecutor
    from mlsyskit.serving.neo.profiler import profile_tables

    ex = TorchExecutor.from_name(model, num_device_blocks=4, num_host_blocks=4)
    t = profile_tables(ex, repeats=repeats)
    t.to_json(out)
    console.print(
        f"linr(1..{t.linr_x[-1]}) {t.linr_s[0] * 1e3:.3f}..{t.linr_s[-1] * 1e3:.3f} ms, "
        f"cdec({t.cdec_n[-1]} req, {t.cdec_x[-1]} tok) {t.cdec_s[-1][-1] * 1e3:.3f} ms, "
        f"lnch {t.lnch_s * 1e6:.0f} us per layer; wrote {out}", highlight=False,
    )


@app.command("setups")
def setups() -> None:
    """The simulated setups: pools and host attention speed."""
    from rich.table import Table

    from mlsyskit.serving.neo.engine import SETUPS

    table = Table(title="NEO setups (simulated)")
    for col in ("setup", "model", "GPU", "host", "TP", "device KV tokens", "host attn GB/s"):
        table.add_column(col)
    for s in SETUPS.values():
        dev, _host = s.pools()
        costs = s.costs()
        table.add_row(s.name, s.model, s.gpu, s.host, str(s.tp), str(dev * s.block_size),
                      f"{costs.host_kv_bytes_per_s / 1e9:.1f}")
    console.print(table)
