"""``mlsyskit demo``: train Minder on a few generated jobs and catch one PCIe downgrade."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlsyskit.results import DemoResult


def demo(out_dir: Path) -> DemoResult:
    """Fit on generated jobs, calibrate on a small labelled set, detect on a fresh job."""
    import torch

    from mlsyskit.training.minder.bench import plot_scores
    from mlsyskit.training.minder.detector import Minder
    from mlsyskit.training.minder.generator import (
        FaultType,
        TraceConfig,
        generate_set,
        generate_trace,
    )

    torch.set_num_threads(1)
    train = generate_set(8, 4, seed=11, machine_choices=(8, 16)).traces
    cal = generate_set(8, 4, seed=12, machine_choices=(8, 16)).traces
    minder = Minder(random_state=0).fit([t.observed() for t in train], [t.faults for t in train])
    minder.calibrate([t.observed() for t in cal], [t.faults for t in cal])
    job = generate_trace(TraceConfig(num_machines=16, fault=FaultType.PCIE_DOWNGRADE),
                         np.random.default_rng(13), name="demo")
    frame = job.observed()
    scores = minder.score(frame)
    alert = minder.detect(frame)
    fault = job.faults[0]
    channel = alert.metric if alert is not None else minder.order_[0]
    plot = plot_scores(scores, fault, channel, minder.thresholds_[channel],
                       alert.alert_time if alert else None, out_dir / "minder_demo_scores.png")
    correct = alert is not None and alert.machine == fault.machine
    summary = (
        f"16-machine job, PCIe downgrade on {fault.machine} from t={fault.start_s:.0f} s: "
        + (f"Minder named {alert.machine} via {alert.metric} at t={alert.alert_time:.0f} s "
           f"(first seen {alert.first_seen:.0f} s)" if alert else "no alert")
    )
    metrics = {"correct_machine": 1.0 if correct else 0.0}
    if alert is not None:
        metrics["detection_delay_s"] = alert.alert_time - fault.start_s
    return DemoResult(summary=summary, metrics=metrics, paper={"continuity_s": 240.0},
                      plots=[plot])
