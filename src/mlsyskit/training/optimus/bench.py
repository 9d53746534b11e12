"""``mlsyskit reproduce optimus``: strong scaling (Table 5), scheduler efficiency (Table 7),
bubble breakdown (Table 1), replay checks (simulated clock) and the real 2-process CPU run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.progress import Progress

from mlsyskit.results import BenchResult
from mlsyskit.training.optimus import baselines
from mlsyskit.training.optimus.build import baseline_schedule, optimus_schedule
from mlsyskit.training.optimus.calibration import (
    encoder_seconds_per_gpu,
    fit,
    paper_linear_fit,
)
from mlsyskit.training.optimus.config import JobConfig, load_builtin
from mlsyskit.training.optimus.costmodel import Calibration, CostModel
from mlsyskit.training.optimus.gantt import plot_gantt
from mlsyskit.training.optimus.pipeline import BubbleType
from mlsyskit.training.optimus.reference import (
    BUBBLE_SHARE,
    MICROBATCHES,
    SCHEDULER_TABLE,
    STRONG_SCALING_S,
)
from mlsyskit.training.optimus.replay import replay
from mlsyskit.training.optimus.schedule import Schedule
from mlsyskit.training.optimus.scheduler import initial_state, serial_evaluation
from mlsyskit.training.optimus.search import SearchResult, efficiency, search

SCALES = (1536, 2048, 3072)


@dataclass
class ScaleResult:
    """One scale's runs; ``replayed_s`` maps a schedule's key (``megatron``, ``balanced``,
    ``coarse``, ``fine``, ``serial``) to the iteration time the replay re-executed, the only
    times the metrics use."""

    gpus: int
    megatron: baselines.PipelineRun
    balanced: baselines.PipelineRun
    result: SearchResult
    eff_coarse: float
    eff_fine: float
    schedules: list[Schedule]
    replayed_s: dict[str, float]


KEYS = ("megatron", "balanced", "coarse", "fine", "serial")


def run_scale(job: JobConfig, cal: Calibration, fine_top_k: int | None) -> ScaleResult:
    cm = CostModel.for_job(job, cal)
    m, b = baselines.megatron(job, cm), baselines.megatron_balanced(job, cm)
    res = search(job, cm, fine_top_k=fine_top_k)
    best = res.best
    schedules = [
        baseline_schedule("Megatron-LM", m.timeline, m.dp.ag_s, m.dp.rs_s, m.iteration_s),
        baseline_schedule("Megatron-LM balanced", b.timeline, b.dp.ag_s, b.dp.rs_s,
                          b.iteration_s),
        optimus_schedule("colocated three-phase (Optimus coarse)", best.ctx, best.coarse,
                         best.coarse_eval),
        optimus_schedule("serial encoder-then-LLM", best.ctx, initial_state(best.ctx, best.parts),
                         serial_evaluation(best.ctx, best.parts), barrier=True),
        optimus_schedule("Optimus (coarse + fine)", best.ctx, best.fine, best.fine_eval),
    ]
    return ScaleResult(
        job.num_gpus, m, b, res, efficiency(best.ctx, best.coarse, best.coarse_eval),
        efficiency(best.ctx, best.fine, best.fine_eval), schedules, {},
    )


def reproduce(quick: bool, out_dir: Path) -> BenchResult:
    """Fit the constants on baseline rows, then simulate and schedule the three scales."""
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = {n: load_builtin(f"vit22b_gpt175b_{n}") for n in SCALES}
    notes: list[str] = []
    with Progress(transient=True) as progress:
        task = progress.add_task("fitting constants on baseline rows", total=None)
        fitted = fit(jobs, progress=lambda i, n: progress.update(task, completed=i, total=n))
        cal = fitted.calibration
        scales: dict[int, ScaleResult] = {}
        t2 = progress.add_task("scheduling", total=len(SCALES))
        for n in SCALES:
            scales[n] = run_scale(jobs[n], cal, 3 if quick else 12)
            progress.advance(t2)
        t3 = progress.add_task("replaying every schedule", total=5 * len(SCALES))
        violations, worst_diff = 0, 0.0
        for sr in scales.values():
            for key, sched in zip(("megatron", "balanced", "coarse", "serial", "fine"),
                                  sr.schedules, strict=True):
                rep = replay(sched)
                sr.replayed_s[key] = rep.replay_makespan_s
                violations += len(rep.violations)
                worst_diff = max(worst_diff, rep.rel_diff)
                if rep.violations:
                    notes.append(f"replay of {sched.name} at {sr.gpus} GPUs: "
                                 f"{rep.violations[:3]}")
                progress.advance(t3)
    metrics: dict[str, float] = {}
    metrics["baseline_time_max_rel_err"] = max(fitted.max_rel_err, fitted.balanced_max_rel_err)
    metrics["megatron_time_max_rel_err"] = fitted.max_rel_err
    metrics["balanced_time_max_rel_err"] = fitted.balanced_max_rel_err
    # Every iteration time below is the replay's re-execution, not a producer's estimate.
    speed_m = {n: s.replayed_s["megatron"] / s.replayed_s["fine"] for n, s in scales.items()}
    speed_b = {n: s.replayed_s["balanced"] / s.replayed_s["fine"] for n, s in scales.items()}
    metrics["speedup_vs_megatron_3072"] = speed_m[3072]
    metrics["speedup_vs_balanced_3072"] = speed_b[3072]
    metrics["speedup_rises_with_scale"] = float(speed_m[1536] < speed_m[2048] < speed_m[3072])
    by_mb = {MICROBATCHES[n]: s for n, s in scales.items()}
    metrics["fine_efficiency_mb16"] = by_mb[16].eff_fine
    metrics["fine_efficiency_mb32"] = by_mb[32].eff_fine
    metrics["coarse_efficiency_mb16"] = by_mb[16].eff_coarse
    metrics["coarse_efficiency_mb32"] = by_mb[32].eff_coarse
    metrics["fine_efficiency_mb24"] = by_mb[24].eff_fine
    metrics["coarse_efficiency_mb24"] = by_mb[24].eff_coarse
    metrics["fine_gt_coarse_efficiency"] = float(all(s.eff_fine > s.eff_coarse
                                                     for s in scales.values()))
    metrics["scheduler_runtime_s_mb16"] = by_mb[16].result.runtime_s
    metrics["replay_violations"] = float(violations)
    metrics["replay_max_rel_diff"] = worst_diff
    for n, s in scales.items():
        metrics[f"megatron_s_{n}"] = s.replayed_s["megatron"]
        metrics[f"balanced_s_{n}"] = s.replayed_s["balanced"]
        metrics[f"optimus_s_{n}"] = s.replayed_s["fine"]
        metrics[f"coarse_s_{n}"] = s.replayed_s["coarse"]
        metrics[f"serial_s_{n}"] = s.replayed_s["serial"]
    s3 = scales[3072]
    enc_gpu = encoder_seconds_per_gpu(jobs[3072], CostModel.for_job(jobs[3072], cal))
    metrics["encoder_s_per_gpu_3072"] = enc_gpu
    # Upper bound of any encoder-only schedule over the balanced baseline if the LLM part
    # of its iteration were as fast as Optimus's (all encoder work hidden).
    metrics["balanced_speedup_bound_3072"] = (s3.balanced.iteration_s
                                              / (s3.balanced.iteration_s - enc_gpu))
    paper_bound = STRONG_SCALING_S[3072][1] / (STRONG_SCALING_S[3072][1] - enc_gpu)
    lin = {key: paper_linear_fit(i) for i, key in enumerate(("megatron", "balanced", "optimus"))}
    metrics["fine_le_coarse_le_serial"] = float(all(
        s.replayed_s["fine"] <= s.replayed_s["coarse"] + 1e-9
        and s.replayed_s["coarse"] <= s.replayed_s["serial"] + 1e-9 for s in scales.values()
    ))
    paper: dict[str, float | str] = {
        "baseline_time_max_rel_err": "Table 5 baseline rows",
        "megatron_time_max_rel_err": "Table 5 Megatron-LM rows (fitted)",
        "balanced_time_max_rel_err": "Table 5 balanced rows (not fitted, see notes)",
        "speedup_vs_megatron_3072": round(5.91 / 4.87, 3),
        "speedup_vs_balanced_3072": round(5.87 / 4.87, 3),
        "speedup_rises_with_scale": 1.0,
        "fine_efficiency_mb16": SCHEDULER_TABLE[16][1],
        "fine_efficiency_mb32": SCHEDULER_TABLE[32][1],
        "coarse_efficiency_mb16": SCHEDULER_TABLE[16][0],
        "coarse_efficiency_mb32": SCHEDULER_TABLE[32][0],
        "fine_efficiency_mb24": SCHEDULER_TABLE[24][1],
        "coarse_efficiency_mb24": SCHEDULER_TABLE[24][0],
        "fine_gt_coarse_efficiency": 1.0,
        "scheduler_runtime_s_mb16": SCHEDULER_TABLE[16][2],
        "replay_violations": 0.0,
    }
    for n, (pm, pb, po) in STRONG_SCALING_S.items():
        paper[f"megatron_s_{n}"], paper[f"balanced_s_{n}"], paper[f"optimus_s_{n}"] = pm, pb, po
    targets = {
        "baseline_time_max_rel_err": "<= 0.10",
        "megatron_time_max_rel_err": "<= 0.10",
        "speedup_vs_megatron_3072": "in [1.15, 1.27]",
        "speedup_vs_balanced_3072": "in [1.15, 1.27]",
        "speedup_rises_with_scale": "== 1",
        "fine_efficiency_mb16": f"in [{SCHEDULER_TABLE[16][1] - 0.1:.3f}, "
                                f"{SCHEDULER_TABLE[16][1] + 0.1:.3f}]",
        "fine_efficiency_mb32": f"in [{SCHEDULER_TABLE[32][1] - 0.1:.3f}, "
                                f"{SCHEDULER_TABLE[32][1] + 0.1:.3f}]",
        "coarse_efficiency_mb16": f"in [{SCHEDULER_TABLE[16][0] - 0.1:.3f}, "
                                  f"{SCHEDULER_TABLE[16][0] + 0.1:.3f}]",
        "coarse_efficiency_mb32": f"in [{SCHEDULER_TABLE[32][0] - 0.1:.3f}, "
                                  f"{SCHEDULER_TABLE[32][0] + 0.1:.3f}]",
        "fine_efficiency_mb24": f"in [{SCHEDULER_TABLE[24][1] - 0.1:.3f}, "
                                f"{SCHEDULER_TABLE[24][1] + 0.1:.3f}]",
        "coarse_efficiency_mb24": f"in [{SCHEDULER_TABLE[24][0] - 0.1:.3f}, "
                                  f"{SCHEDULER_TABLE[24][0] + 0.1:.3f}]",
        "fine_gt_coarse_efficiency": "== 1",
        "replay_violations": "== 0",
        "replay_max_rel_diff": "<= 0.01",
        "fine_le_coarse_le_serial": "== 1",
    }
    simulated = [k for k in metrics if k != "scheduler_runtime_s_mb16"]
    c = cal
    notes.append(
        f"constants fitted on the 3 Megatron-LM rows only, within physical bounds "
        f"(compute 0.8-1.05, P2P 1-8x, DP 0.5-2x): compute_scale={c.compute_scale}, "
        f"p2p_scale={c.p2p_scale}, dp_scale={c.dp_scale} (max rel err "
        f"{fitted.max_rel_err:.3f}; all-1.0 constants already give <= 0.04); Optimus rows "
        f"never used; balanced rows reported, not fitted (max rel err "
        f"{fitted.balanced_max_rel_err:.2f})"
    )
    notes.append(
        "why the balanced rows are not fitted: the paper's interleaved V=12 balanced baseline is "
        "~1.55-1.6x slower than the hardware model predicts for its schedule, while Megatron-LM "
        "(encoder on stage 0, 1F1B) matches without any constant; the only knob that absorbs "
        "it is a ~44x P2P charge (~12 ms per 12.6 MB hop on a 50 GB/s link), which is not "
        "physical and would put the same charge on Optimus's interleaved LLM pipeline"
    )
    notes.append(
        "why the paper's Optimus speedups are out of reach of an honest model: (1) Optimus "
        "beats balanced by 1.0 s at 3,072 GPUs, but one GPU's whole encoder work per "
        f"iteration is {enc_gpu:.2f} s (encoder_s_per_gpu_3072, at the kernel rate that "
        "reproduces Megatron-LM); hiding all of it behind an LLM part only as fast as "
        "balanced's would give balanced_speedup_bound_3072 "
        f"({metrics['balanced_speedup_bound_3072']:.3f}; "
        f"{paper_bound:.3f} with the paper's balanced time); anything beyond comes from "
        "Optimus's LLM-alone pipeline being faster than balanced's mixed ViT+GPT virtual "
        "stages. "
        "(2) Fitting T = a*m + b (m microbatches) to each system's three paper rows gives "
        f"Megatron-LM a={lin['megatron'][0]:.3f} s, b={lin['megatron'][1]:.2f} s, which is "
        "1F1B with a stage-0 encoder "
        "(a = tau + e, b ~ 7 tau + DP, tau ~ e ~ 0.15 s per microbatch), but Optimus "
        f"a={lin['optimus'][0]:.3f} s, b={lin['optimus'][1]:.2f} s (balanced "
        f"a={lin['balanced'][0]:.3f} s, b={lin['balanced'][1]:.2f} "
        "s): a per-microbatch cost twice the LLM stage time the Megatron-LM rows imply, and no "
        "pipeline fill or DP time at all. With one shared LLM cost model, Optimus therefore "
        "comes out much faster than the paper's vs Megatron-LM and slower than it vs balanced"
    )
    for n, s in scales.items():
        b = s.result.best
        notes.append(
            f"{n} GPUs: encoder plan {b.plan.label()} (m={b.plan.pipelines_per_llm}), partition "
            f"{b.parts}; {s.result.num_plans} plans, {s.result.num_partitions} partitions, fine "
            f"step on the best {s.result.num_fine_runs} (coarse-ranked); replayed times: "
            f"Megatron {s.replayed_s['megatron']:.2f}s, balanced {s.replayed_s['balanced']:.2f}s, "
            f"coarse {s.replayed_s['coarse']:.2f}s, Optimus {s.replayed_s['fine']:.2f}s, serial "
            f"{s.replayed_s['serial']:.2f}s"
        )
    plots = _plots(scales, out_dir)
    _extra_rows(cal, metrics, paper, notes)
    simulated += [f"speedup_multi_encoder_512{m[1]}" for m in MULTI_ENCODER]
    simulated += _weak_rows(cal, quick, metrics, paper, targets, notes, out_dir, plots)
    simulated += ["memory_overhead_frac_3072",
                  "memory_total_frac_3072"]
    from mlsyskit.training.optimus.cpu_run import CpuRunConfig, run_cpu

    cpu_cfg = CpuRunConfig(iterations=5 if quick else 9)
    cpu = run_cpu(cpu_cfg)
    metrics["cpu_run_speedup"] = cpu.speedup
    metrics["cpu_sim_rel_err"] = cpu.sim_rel_err
    metrics["cpu_sim_rel_err_isolated"] = cpu.isolated_rel_err
    metrics["cpu_megatron_isolated_s"] = cpu.isolated_s["megatron"]
    metrics["cpu_optimus_isolated_s"] = cpu.isolated_s["optimus"]
    metrics["cpu_kernel_inflation"] = cpu.kernel_inflation
    metrics["cpu_p2p_lag_s"] = cpu.p2p_lag_s
    metrics["cpu_kernel_drift"] = cpu.kernel_drift
    simulated += ["cpu_megatron_isolated_s", "cpu_optimus_isolated_s"]
    notes.append(
        "cpu_sim_rel_err: prediction made before the timed run from costs the two workers "
        "measure in situ, both at once, before they receive any schedule (kernel islands "
        "while cycling through a stage's layers, the gloo P2P lag as the interpreter pays "
        "it, and how late an emulated wait returns); the task graph is re-executed with "
        f"kernel times drawn from those samples (median of {cpu_cfg.prediction_draws} "
        "draws). In-situ kernels took "
        f"{cpu.kernel_inflation:.2f}x the parent's isolated one-layer profile and the P2P "
        f"lag was {cpu.p2p_lag_s * 1e6:.0f} us; cpu_sim_rel_err_isolated is the old "
        "prediction (isolated profile, nominal 0.3 ms P2P); cpu_kernel_drift = kernel time "
        "in the last timed iteration / the pre-run means (1 = the load did not change "
        "between measurement and run; other jobs' load makes it drift)"
    )
    metrics["cpu_grads_match_serial"] = float(all(cpu.grads_match.values()))
    metrics["cpu_megatron_s"] = cpu.measured_s["megatron"]
    metrics["cpu_optimus_s"] = cpu.measured_s["optimus"]
    metrics["cpu_megatron_sim_s"] = cpu.simulated_s["megatron"]
    metrics["cpu_optimus_sim_s"] = cpu.simulated_s["optimus"]
    metrics["replay_violations"] += float(cpu.replay_violations)
    simulated += ["cpu_megatron_sim_s", "cpu_optimus_sim_s"]
    targets["cpu_run_speedup"] = ">= 1.10"
    targets["cpu_sim_rel_err"] = "<= 0.20"
    targets["cpu_grads_match_serial"] = "== 1"
    notes.append(
        f"real CPU run: tiny ViT ({cpu_cfg.seq_len} tokens) + GPT on 2 gloo processes, one "
        f"thread each, microbatches {cpu_cfg.num_microbatches}, emulated TP collective "
        f"{cpu_cfg.tp_comm_s * 1e3:.1f} ms, DP AG/RS {cpu_cfg.dp_ag_s * 1e3:.0f}/"
        f"{cpu_cfg.dp_rs_s * 1e3:.0f} ms; encoder plan {cpu.encoder_plan}, partition "
        f"{cpu.partition}; median of {cpu_cfg.iterations} iterations after {cpu_cfg.warmup} "
        f"warm-up; max |grad - serial| {max(cpu.max_grad_err.values()):.2e}; wall times on "
        "a shared 2-core machine are noisy (static schedules do not adapt to jitter)"
    )
    from mlsyskit.training.optimus.gantt import plot_gantt

    plot_gantt([cpu.schedules["megatron"], cpu.schedules["optimus"]],
               out_dir / "optimus_cpu_gantt_simulated.png",
               title="CPU run, simulated from profiled kernel times")
    plot_gantt([cpu.measured["megatron"], cpu.measured["optimus"]],
               out_dir / "optimus_cpu_gantt_measured.png",
               title="CPU run, measured (last iteration)")
    plots += ["optimus_cpu_gantt_simulated.png", "optimus_cpu_gantt_measured.png"]
    return BenchResult(metrics, paper, targets, simulated, notes, plots)


def _plots(scales: dict[int, ScaleResult], out_dir: Path) -> list[str]:
    from mlsyskit.report.plotting import new_figure, save_figure

    s3 = scales[3072]
    names = []
    plot_gantt(s3.schedules, out_dir / "optimus_gantt_3072.png",
               title="ViT-22B + GPT-175B, 3,072 GPUs (one pipeline replica)")
    names.append("optimus_gantt_3072.png")
    fine = s3.schedules[-1]
    start = _first_filled_bubble(fine)
    plot_gantt([fine], out_dir / "optimus_gantt_3072_zoom.png",
               window=(start - 0.005, start + 0.025),
               title="zoom: encoder kernels inside TP bubbles (first filled bubble)")
    names.append("optimus_gantt_3072_zoom.png")
    fig = new_figure(7, 4)
    ax = fig.subplots()
    xs = list(range(len(scales)))
    width = 0.2
    for i, (label, key) in enumerate((("Megatron-LM", "m"), ("balanced", "b"), ("Optimus", "o"))):
        sim = [{"m": s.replayed_s["megatron"], "b": s.replayed_s["balanced"],
                "o": s.replayed_s["fine"]}[key] for s in scales.values()]
        pap = [STRONG_SCALING_S[n][i] for n in scales]
        ax.bar([x + (i - 1) * width for x in xs], sim, width * 0.9, label=f"{label} (sim)")
        ax.scatter([x + (i - 1) * width for x in xs], pap, marker="_", s=200, color="k",
                   zorder=3, label="paper" if i == 0 else None)
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{n} GPUs" for n in scales])
    ax.set_ylabel("iteration time (s)")
    ax.legend(fontsize=7)
    save_figure(fig, out_dir / "optimus_strong_scaling.png")
    names.append("optimus_strong_scaling.png")
    fig = new_figure(7, 3.5)
    ax = fig.subplots()
    bub = s3.megatron.bubbles()
    kinds = list(BubbleType)
    ax.bar([k.value for k in kinds], [bub[k] / s3.megatron.iteration_s for k in kinds],
           label="simulated Megatron-LM, 3,072 GPUs")
    ax.scatter([k.value for k in kinds], [BUBBLE_SHARE[k.value] for k in kinds], color="k",
               zorder=3, label="paper Table 1 (production job)")
    ax.set_ylabel("share of iteration")
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(fontsize=7)
    save_figure(fig, out_dir / "optimus_bubbles.png")
    names.append("optimus_bubbles.png")
    return names




#: the paper's Table 6 pairs: config, metric suffix, label, Optimus vs Megatron-LM
MULTI_ENCODER = (
    ("dualenc_vit11b_vit5b_gpt175b_512", "_vit11b_vit5b", "ViT-11B + ViT-5B", 1.25),
    ("dualenc_gpt175b_512", "", "ViT-22B + ViT-5B", 1.26),
    ("dualenc_vit22b_vit11b_gpt175b_512", "_vit22b_vit11b", "ViT-22B + ViT-11B", 1.27),
)


def _extra_rows(cal: Calibration, metrics: dict[str, float], paper: dict[str, float | str],
                notes: list[str]) -> None:
    """Multi-encoder speedup (Table 6 setting) and the memory overhead of the chosen plan."""
    from mlsyskit.training.optimus.planner import memory_estimate, memory_overhead

    multi: list[str] = []
    for config, suffix, label, paper_speedup in MULTI_ENCODER:
        job = load_builtin(config)
        cm = CostModel.for_job(job, cal)
        mega = baselines.megatron(job, cm)
        best = search(job, cm, fine_top_k=3).best
        mega_rep = replay(baseline_schedule("Megatron-LM", mega.timeline, mega.dp.ag_s,
                                            mega.dp.rs_s, mega.iteration_s))
        fine_rep = replay(optimus_schedule("Optimus", best.ctx, best.fine, best.fine_eval))
        mega_s = mega_rep.replay_makespan_s
        metrics["replay_violations"] += float(len(mega_rep.violations)
                                              + len(fine_rep.violations))
        metrics[f"speedup_multi_encoder_512{suffix}"] = mega_s / fine_rep.replay_makespan_s
        paper[f"speedup_multi_encoder_512{suffix}"] = paper_speedup
        multi.append(f"{label}: Megatron-LM {mega_s:.2f}s, Optimus "
                     f"{fine_rep.replay_makespan_s:.2f}s with plan {best.plan.label()}")
    job3 = load_builtin("vit22b_gpt175b_3072")
    plan = search(job3, CostModel.for_job(job3, cal), fine_top_k=1).best.plan
    cap = job3.gpu.memory_bytes
    metrics["memory_overhead_frac_3072"] = memory_overhead(job3, plan) / cap
    metrics["memory_total_frac_3072"] = memory_estimate(job3, plan).total / cap
    paper["memory_overhead_frac_3072"] = "<= 0.12 (Fig. 17, vs leanest baseline)"
    notes.append(
        "multi-encoder + GPT-175B, 512 GPUs (Table 6 pairs, replayed times; the second "
        "encoder sees 1024 tokens): " + "; ".join(multi)
        + f"; memory of the 3,072-GPU plan {plan.label()}: overhead "
        f"k(DP_enc - DP_llm)Phi_enc/n = {memory_overhead(job3, plan) / 2**30:.1f} GiB per GPU"
    )


def _weak_rows(cal: Calibration, quick: bool, metrics: dict[str, float],
               paper: dict[str, float | str], targets: dict[str, str], notes: list[str],
               out_dir: Path, plots: list[str]) -> list[str]:
    """Weak scaling (Fig. 15, models A-D): speedups from replayed times; returns the names."""
    from mlsyskit.training.optimus.weak import WEAK_MODELS, plot_weak, weak_scaling

    times = weak_scaling(cal, 3 if quick else 12)
    names: list[str] = []
    for key, t in times.items():
        metrics["replay_violations"] += t["violations"]
        metrics[f"weak_speedup_vs_megatron_{key}"] = t["megatron"] / t["fine"]
        metrics[f"weak_speedup_vs_balanced_{key}"] = t["balanced"] / t["fine"]
        names += [f"weak_speedup_vs_megatron_{key}", f"weak_speedup_vs_balanced_{key}"]
    for base, pap, tgt in (("megatron", 1.22, "in [1.17, 1.27]"),
                           ("balanced", 1.18, "in [1.13, 1.23]")):
        name = f"weak_max_speedup_vs_{base}"
        metrics[name] = max(metrics[f"weak_speedup_vs_{base}_{k}"] for k in times)
        paper[name] = pap
        targets[name] = tgt
        names.append(name)
    notes.append("weak scaling (Fig. 15, replayed times; A/B use V5, not the paper's V6, "
                 "which does not divide LLaMA-70B's 80 layers over PP4): " + "; ".join(
                     f"{WEAK_MODELS[k][1]} ({WEAK_MODELS[k][2]} GPUs): Megatron-LM "
                     f"{t['megatron']:.2f}s, balanced {t['balanced']:.2f}s, Optimus "
                     f"{t['fine']:.2f}s, serial {t['serial']:.2f}s" for k, t in times.items()))
    plot_weak(times, out_dir / "optimus_weak_scaling.png")
    plots.append("optimus_weak_scaling.png")
    return names


def _first_filled_bubble(s: Schedule) -> float:
    """Start of the first encoder compute kernel that runs inside an LLM TP collective."""
    from bisect import bisect_right

    from mlsyskit.training.optimus.schedule import Owner, Resource

    comm: dict[int, list[tuple[float, float]]] = {}
    for t in s.tasks:
        if t.owner is Owner.LLM and t.resource is Resource.LINK:
            comm.setdefault(t.device, []).append((t.start_s, t.end_s))
    for spans in comm.values():
        spans.sort()
    best = float("inf")
    for t in s.tasks:
        if t.owner is Owner.ENCODER and t.resource is Resource.COMPUTE and t.start_s < best:
            spans = comm.get(t.device, [])
            i = bisect_right(spans, (t.start_s, float("inf"))) - 1
            if i >= 0 and spans[i][0] <= t.start_s and t.end_s <= spans[i][1] + 1e-12:
                best = t.start_s
    if best == float("inf"):
        return min(t.start_s for t in s.tasks if t.owner is Owner.LLM)
    return best
