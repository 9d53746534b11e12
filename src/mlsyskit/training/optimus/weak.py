"""Weak scaling (paper Fig. 15, Appendix D models A-D): replayed Megatron-LM, balanced and
Optimus iteration times per model, computed exactly as the strong-scaling loop does."""

from __future__ import annotations

from pathlib import Path

from mlsyskit.training.optimus.costmodel import Calibration
from mlsyskit.training.optimus.replay import replay

#: model key -> (shipped config, label, GPUs)
WEAK_MODELS = {
    "a": ("weak_a", "A: ViT-11B + LLaMA-70B", 64),
    "b": ("weak_b", "B: ViT-22B + LLaMA-70B", 128),
    "c": ("weak_c", "C: ViT-11B + GPT-175B", 256),
    "d": ("weak_d", "D: ViT-22B + GPT-175B", 512),
}
KEYS = ("megatron", "balanced", "coarse", "serial", "fine")


def weak_scaling(cal: Calibration, fine_top_k: int | None,
                 keys: tuple[str, ...] | None = None) -> dict[str, dict[str, float]]:
    """Replayed iteration times (s) per model key and schedule key.

    Uses ``bench.run_scale`` (the strong-scaling search and schedule builder), then replays
    every schedule, so every time is the replay's re-execution, never a producer estimate.
    ``violations`` counts the replay's rule violations over the model's five schedules.
    ``keys`` picks models (default: all four).
    """
    from mlsyskit.training.optimus.bench import run_scale
    from mlsyskit.training.optimus.config import load_builtin

    out: dict[str, dict[str, float]] = {}
    for key in keys if keys is not None else tuple(WEAK_MODELS):
        config = WEAK_MODELS[key][0]
        sr = run_scale(load_builtin(config), cal, fine_top_k)
        times: dict[str, float] = {"violations": 0.0}
        for name, sched in zip(KEYS, sr.schedules, strict=True):
            rep = replay(sched)
            times[name] = rep.replay_makespan_s
            times["violations"] += len(rep.violations)
        out[key] = times
    return out


def plot_weak(times: dict[str, dict[str, float]], path: Path) -> None:
    """Bar chart of Optimus's speedup over Megatron-LM and balanced per model."""
    from mlsyskit.report.plotting import new_figure, save_figure

    fig = new_figure(7, 3.5)
    ax = fig.subplots()
    keys = list(times)
    xs = range(len(keys))
    for i, (base, label) in enumerate((("megatron", "vs Megatron-LM"),
                                       ("balanced", "vs Megatron-LM balanced"))):
        ax.bar([x + (i - 0.5) * 0.4 for x in xs],
               [times[k][base] / times[k]["fine"] for k in keys], 0.36, label=label)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(list(xs))
    ax.set_xticklabels([WEAK_MODELS[k][1] + f"\n{WEAK_MODELS[k][2]} GPUs" for k in keys],
                       fontsize=6)
    ax.set_ylabel("Optimus speedup (replayed)")
    ax.legend(fontsize=7)
    save_figure(fig, path)
