"""``mlsyskit optimus``: plan and schedule a multimodal job, draw its Gantt chart."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mlsyskit.clikit import console, new_app

app = new_app("Optimus: schedule multimodal encoder work inside the LLM's pipeline bubbles.")


def _load(config: str):  # type: ignore[no-untyped-def]
    from mlsyskit.training.optimus.config import builtin_config_names, load_builtin, load_config

    path = Path(config)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return load_config(path)
    names = builtin_config_names()
    if config in names:
        return load_builtin(config)
    from mlsyskit.training.optimus.errors import OptimusConfigError

    raise OptimusConfigError(
        f"{config!r} is neither a YAML file nor a shipped config; shipped configs: "
        f"{', '.join(names)}"
    )


CONFIG_ARG = Annotated[
    str, typer.Argument(help="YAML file, or a shipped config name (see `optimus configs`).")
]


@app.command("configs")
def configs() -> None:
    """List the example configs shipped with mlsyskit."""
    from mlsyskit.training.optimus.config import builtin_config_names

    for name in builtin_config_names():
        console.print(name)


@app.command("plan")
def plan(
    config: CONFIG_ARG,
    fine_top_k: Annotated[int, typer.Option(help="Partitions (best by coarse) given the "
                                                 "fine step.")] = 3,
) -> None:
    """Choose the encoder plan and partition, schedule, and print times and bubbles."""
    from mlsyskit.training.optimus import baselines
    from mlsyskit.training.optimus.build import baseline_schedule, optimus_schedule
    from mlsyskit.training.optimus.costmodel import CostModel
    from mlsyskit.training.optimus.planner import require_plans
    from mlsyskit.training.optimus.replay import replay
    from mlsyskit.training.optimus.scheduler import initial_state, serial_evaluation
    from mlsyskit.training.optimus.search import efficiency, search

    job = _load(config)
    plans = require_plans(job, config)  # none feasible: the config's fault, exit 2
    cm = CostModel.for_job(job)
    why_not = baselines.encoder_tp_problem(job)
    m = b = None
    if why_not is None:
        m = baselines.megatron(job, cm)
        if len(job.encoders) == 1:
            b = baselines.megatron_balanced(job, cm)
    res = search(job, cm, fine_top_k=fine_top_k, plans=plans)
    best = res.best
    console.print(
        f"[bold]{job.name}[/]: {job.num_gpus} x {job.gpu.display_name}, LLM "
        f"DP{job.llm_plan.dp} PP{job.llm_plan.pp} TP{job.llm_plan.tp} "
        f"V{job.llm_plan.virtual_stages}, {job.llm_plan.num_microbatches} microbatches"
    )
    console.print(
        f"encoder plan {best.plan.label()} (m = {best.plan.pipelines_per_llm} encoder pipelines "
        f"per LLM pipeline), microbatch partition {best.parts}; searched {res.num_plans} plans, "
        f"{res.num_partitions} partitions in {res.runtime_s:.1f} s"
    )
    # every time in the table is the independent replay's re-execution of the schedule
    schedules = [] if m is None else [
        baseline_schedule("Megatron-LM", m.timeline, m.dp.ag_s, m.dp.rs_s, m.iteration_s)]
    if b is not None:
        schedules.append(baseline_schedule("Megatron-LM balanced", b.timeline, b.dp.ag_s,
                                           b.dp.rs_s, b.iteration_s))
    schedules += [
        optimus_schedule("serial encoder-then-LLM", best.ctx, initial_state(best.ctx, best.parts),
                         serial_evaluation(best.ctx, best.parts), barrier=True),
        optimus_schedule("colocated three-phase (coarse)", best.ctx, best.coarse,
                         best.coarse_eval),
        optimus_schedule("Optimus (coarse + fine)", best.ctx, best.fine, best.fine_eval),
    ]
    reports = [replay(sched) for sched in schedules]
    table = Table(title="iteration time (simulated, replayed)")
    for col in ("schedule", "seconds", "speedup of Optimus", "replay violations"):
        table.add_column(col)
    opt = reports[-1].replay_makespan_s
    for sched, rep in zip(schedules, reports, strict=True):
        secs = rep.replay_makespan_s
        table.add_row(sched.name, f"{secs:.3f}", f"{secs / opt:.3f}x", str(len(rep.violations)))
    console.print(table)
    console.print(
        f"efficiency (encoder compute inside LLM bubbles): coarse "
        f"{efficiency(best.ctx, best.coarse, best.coarse_eval):.3f}, fine "
        f"{efficiency(best.ctx, best.fine, best.fine_eval):.3f}"
    )
    if m is None:
        console.print(f"no Megatron-LM baselines: {why_not}", highlight=False)
        return
    bub = Table(title="bubbles of Megatron-LM (seconds per device, share of iteration)")
    for col in ("type", "seconds", "share"):
        bub.add_column(col)
    for kind, secs in m.bubbles().items():
        bub.add_row(kind.value, f"{secs:.3f}", f"{secs / m.iteration_s:.1%}")
    console.print(bub)


@app.command("gantt")
def gantt(
    config: CONFIG_ARG,
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG file.")] = Path(
        "gantt.png"
    ),
    fine_top_k: Annotated[int, typer.Option(help="Partitions given the fine step.")] = 3,
) -> None:
    """Draw per-device Gantt charts: Megatron-LM, coarse and fine Optimus schedules."""
    from mlsyskit.training.optimus import baselines
    from mlsyskit.training.optimus.build import baseline_schedule, optimus_schedule
    from mlsyskit.training.optimus.costmodel import CostModel
    from mlsyskit.training.optimus.gantt import plot_gantt
    from mlsyskit.training.optimus.planner import require_plans
    from mlsyskit.training.optimus.search import search

    job = _load(config)
    plans = require_plans(job, config)  # none feasible: the config's fault, exit 2
    cm = CostModel.for_job(job)
    m = baselines.megatron(job, cm)
    best = search(job, cm, fine_top_k=fine_top_k, plans=plans).best
    schedules = [
        baseline_schedule("Megatron-LM", m.timeline, m.dp.ag_s, m.dp.rs_s, m.iteration_s),
        optimus_schedule("Optimus coarse", best.ctx, best.coarse, best.coarse_eval),
        optimus_schedule("Optimus fine", best.ctx, best.fine, best.fine_eval),
    ]
    plot_gantt(schedules, output, title=job.name)
    console.print(f"wrote {output}")


@app.command("run-cpu")
def run_cpu(
    iterations: Annotated[int, typer.Option(min=1, help="Timed iterations per schedule.")] = 5,
    microbatches: Annotated[int, typer.Option(min=1, help="Microbatches per iteration.")] = 4,
    gantt_out: Annotated[
        Path | None, typer.Option("--gantt", help="Also write measured Gantt charts here.")
    ] = None,
) -> None:
    """Run a tiny ViT + GPT on 2 gloo processes with the Megatron-LM and Optimus schedules."""
    from mlsyskit.training.optimus.cpu_run import CpuRunConfig
    from mlsyskit.training.optimus.cpu_run import run_cpu as _run
    from mlsyskit.training.optimus.gantt import plot_gantt

    res = _run(CpuRunConfig(num_microbatches=microbatches, iterations=iterations))
    table = Table(title=f"CPU run (encoder plan {res.encoder_plan}, partition {res.partition})")
    for col in ("schedule", "measured s", "simulated s", "grads == serial", "max |grad err|"):
        table.add_column(col)
    for key in ("megatron", "optimus"):
        table.add_row(key, f"{res.measured_s[key]:.4f}", f"{res.simulated_s[key]:.4f}",
                      str(res.grads_match[key]), f"{res.max_grad_err[key]:.1e}")
    console.print(table)
    console.print(f"measured speedup {res.speedup:.3f}x; simulator error {res.sim_rel_err:.1%} "
                  f"(isolated profile: {res.isolated_rel_err:.1%}); replay violations "
                  f"{res.replay_violations}")
    console.print(f"in situ: kernels {res.kernel_inflation:.2f}x the isolated profile, gloo P2P "
                  f"lag {res.p2p_lag_s * 1e6:.0f} us")
    if gantt_out is not None:
        plot_gantt([res.measured["megatron"], res.measured["optimus"]], gantt_out,
                   title="CPU run, measured")
        console.print(f"wrote {gantt_out}")
