"""Gantt charts of a :class:`Schedule`: one row per device, kernels coloured by owner."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from mlsyskit.report.plotting import new_figure, save_figure
from mlsyskit.training.optimus.schedule import Owner, Resource, Schedule

_COLOURS = {
    (Owner.LLM, Resource.COMPUTE): ("#1f77b4", "LLM compute"),
    (Owner.LLM, Resource.LINK): ("#c7c7c7", "LLM TP collective (TP bubble)"),
    (Owner.ENCODER, Resource.COMPUTE): ("#ff7f0e", "encoder compute"),
    (Owner.ENCODER, Resource.LINK): ("#d62728", "encoder collective"),
    (Owner.DP, Resource.DP_LINK): ("#2ca02c", "DP all-gather / reduce-scatter"),
}


def plot_gantt(
    schedules: list[Schedule], path: Path, *, window: tuple[float, float] | None = None,
    title: str = "",
) -> Path:
    """Draw each schedule as a panel of device rows and save a PNG.

    Compute-stream work fills the upper part of a row, link and DP work the lower part, so
    encoder kernels inside TP bubbles are visible.  ``window`` zooms to ``(t0, t1)`` seconds.
    """
    fig = new_figure(11.0, 2.2 + 1.9 * len(schedules))
    axes = fig.subplots(len(schedules), 1, squeeze=False)[:, 0]
    for ax, s in zip(axes, schedules, strict=True):
        bars: dict[tuple[Owner, Resource, int], list[tuple[float, float]]] = defaultdict(list)
        for t in s.tasks:
            if window and (t.end_s < window[0] or t.start_s > window[1]):
                continue
            bars[(t.owner, t.resource, t.device)].append((t.start_s, t.duration_s))
        seen = set()
        for (owner, res, dev), spans in bars.items():
            colour, label = _COLOURS[(owner, res)]
            y = dev + (0.05 if res is Resource.COMPUTE else 0.55)
            ax.broken_barh(spans, (y, 0.4), facecolors=colour, linewidth=0,
                           label=None if label in seen else label)
            seen.add(label)
        ax.set_yticks([d + 0.5 for d in range(s.num_devices)])
        ax.set_yticklabels([f"dev {d}" for d in range(s.num_devices)], fontsize=7)
        ax.set_ylim(s.num_devices, 0)
        ax.set_xlim(*(window or (0.0, s.makespan_s * 1.01)))
        ax.set_title(f"{s.name}: {s.makespan_s:.3f} s", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    axes[-1].set_xlabel("time (s)")
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(bottom=0.12)
    return save_figure(fig, path)
