"""``mlsyskit demo trainmover``: one small job, a planned move and a SIGKILL, both live."""

from __future__ import annotations

import tempfile
from pathlib import Path

from mlsyskit.results import DemoResult
from mlsyskit.training.trainmover.config import JobConfig
from mlsyskit.training.trainmover.controller import Controller
from mlsyskit.training.trainmover.strategies import LiveMigration
from mlsyskit.training.trainmover.timeline import completion_times, loss_curve


def demo(out_dir: Path) -> DemoResult:
    """2 data-parallel workers + 1 warm standby: move rank 1, then SIGKILL rank 0."""
    config = JobConfig(
        num_workers=2, num_standby=1, steps=1_000_000, hidden=128, layers=4,
        step_delay_s=0.05,
    )
    with (
        tempfile.TemporaryDirectory(prefix="trainmover-demo-") as tmp,
        Controller(config, Path(tmp)) as ctl,
    ):
        ctl.wait_standbys()
        ctl.wait_progress(ctl.progress() + 3)
        planned = LiveMigration(recycle_leaver=True).planned(ctl, 1)
        ctl.wait_progress(planned.switch_iteration + 15)
        t_kill = ctl.kill(0)
        dead, _ = ctl.detect_failure()
        crash = LiveMigration().failure(ctl, dead, t_kill)
        ctl.wait_progress(ctl.progress() + 10)
        steps = ctl.steps()
        members = list(ctl.members)
    times = completion_times(steps, config.num_workers)
    curve = loss_curve(steps)
    plot = _plot(out_dir, times, curve, planned.switch_iteration, crash.switch_iteration)
    return DemoResult(
        summary=(
            f"2 DP workers trained on; rank 1 moved to a warm standby after iteration "
            f"{planned.switch_iteration} ({planned.downtime_s:.3f} s downtime), then rank 0 was "
            f"SIGKILLed and replaced by the recycled leaver after iteration "
            f"{crash.switch_iteration} ({crash.downtime_s:.3f} s). Members now: {members}."
        ),
        metrics={
            "planned_downtime_s": planned.downtime_s,
            "failure_downtime_s": crash.downtime_s,
            "median_step_s": planned.median_step_s,
        },
        paper={"planned_downtime_s": "16.6 s at 1,024 GPUs", "failure_downtime_s": "21.1 s"},
        plots=[plot],
    )


def _plot(
    out_dir: Path, times: dict[int, float], curve: dict[int, float], moved: int, killed: int
) -> Path:
    from mlsyskit.report.plotting import new_figure, save_figure

    fig = new_figure(7.0, 4.5)
    top, bottom = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
    its = sorted(i for i in times if i + 1 in times)
    top.plot(its, [times[i + 1] - times[i] for i in its], lw=1)
    for it, label, height in ((moved, "planned move", 0.9), (killed, "SIGKILL", 0.7)):
        top.axvline(it, color="red", ls="--", lw=0.8)
        top.text(it, top.get_ylim()[1] * height, f" {label}", fontsize=8, color="red")
    top.set_ylabel("step time (s)")
    top.set_title("TrainMover demo: the job keeps stepping through a move and a crash")
    bottom.plot(list(curve), list(curve.values()), lw=1)
    bottom.set_xlabel("iteration")
    bottom.set_ylabel("loss")
    return save_figure(fig, out_dir / "trainmover_demo.png")
