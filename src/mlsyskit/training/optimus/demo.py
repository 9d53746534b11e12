"""Small end-to-end demo: plan and schedule the shipped small job, draw its Gantt chart."""

from __future__ import annotations

from pathlib import Path

from mlsyskit.results import DemoResult
from mlsyskit.training.optimus import baselines
from mlsyskit.training.optimus.build import baseline_schedule, optimus_schedule
from mlsyskit.training.optimus.config import load_builtin
from mlsyskit.training.optimus.costmodel import CostModel
from mlsyskit.training.optimus.gantt import plot_gantt
from mlsyskit.training.optimus.replay import replay
from mlsyskit.training.optimus.search import efficiency, search


def demo(out_dir: Path) -> DemoResult:
    """Schedule ViT-3B + GPT-11B on 32 A100s, replay-check it and plot the timelines."""
    job = load_builtin("small")
    cm = CostModel.for_job(job)
    m = baselines.megatron(job, cm)
    res = search(job, cm, fine_top_k=3)
    best = res.best
    schedules = [
        baseline_schedule("Megatron-LM", m.timeline, m.dp.ag_s, m.dp.rs_s, m.iteration_s),
        optimus_schedule("Optimus coarse", best.ctx, best.coarse, best.coarse_eval),
        optimus_schedule("Optimus fine", best.ctx, best.fine, best.fine_eval),
    ]
    reports = [replay(s) for s in schedules]  # the times below are the replay's
    violations = sum(len(r.violations) for r in reports)
    mega_s, coarse_s, fine_s = (r.replay_makespan_s for r in reports)
    path = plot_gantt(schedules, out_dir / "optimus_demo_gantt.png", title=job.name)
    return DemoResult(
        summary=(
            f"Planned {job.name}: encoder plan {best.plan.label()}, partition {best.parts}; "
            f"Megatron-LM {mega_s:.3f}s vs Optimus {fine_s:.3f}s (simulated, shipped "
            f"calibration, as the independent replay re-executes them); {violations} replay "
            "violations."
        ),
        metrics={
            "megatron_s": mega_s,
            "optimus_coarse_s": coarse_s,
            "optimus_fine_s": fine_s,
            "fine_efficiency": efficiency(best.ctx, best.fine, best.fine_eval),
            "replay_violations": float(violations),
        },
        plots=[path],
        simulated=["megatron_s", "optimus_coarse_s", "optimus_fine_s", "fine_efficiency"],
    )
