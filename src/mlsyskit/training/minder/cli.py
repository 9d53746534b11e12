"""``mlsyskit minder ...``: generate, train, detect, evaluate, watch, lab.

Heavy imports (torch, sklearn, pandas) happen inside the commands so ``mlsyskit --help`` stays
fast.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mlsyskit.clikit import console, new_app
from mlsyskit.errors import ConfigError
from mlsyskit.training.minder.lab_faults import LabFault

if TYPE_CHECKING:
    from mlsyskit.training.minder.detector import Minder
    from mlsyskit.training.minder.frame import MetricFrame
    from mlsyskit.training.minder.generator import FaultLabel
    from mlsyskit.training.minder.pipeline import PassSchedule

app = new_app("Minder: find the faulty machine of a training job from its monitoring metrics.")


class TableFormat(StrEnum):
    parquet = "parquet"
    csv = "csv"


SPAN = typer.Option("--span-s", help="Seconds of data one detection pass sees (paper: 900).")
INTERVAL = typer.Option("--interval-s", help="Seconds between passes (paper: 480).")
CONTINUITY = typer.Option("--continuity-s", help="How long the same machine must stay the "
                          "candidate before an alert (paper: 240).")


def _schedule(span_s: float, interval_s: float) -> PassSchedule:
    from mlsyskit.training.minder.pipeline import PassSchedule

    if span_s <= 0 or interval_s <= 0:
        raise ConfigError("--span-s and --interval-s must be > 0")
    return PassSchedule(span_s=span_s, interval_s=interval_s)


def _load_or_fit(model: Path | None, table: object, continuity_s: float | None,
                 seed: int) -> Minder:
    from mlsyskit.training.minder.detector import Minder
    from mlsyskit.training.minder.pipeline import job_frames

    if model is not None:
        minder = Minder.load(model)
    else:
        console.print("[dim]no --model: training on the input itself (unlabelled)[/]",
                      highlight=False)
        frames = [f for _, f in job_frames(table)]  # type: ignore[arg-type]
        minder = Minder(random_state=seed).fit(frames)
    if continuity_s is not None:
        minder.continuity_s = continuity_s
    return minder


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Output folder (metrics + faults.csv).")],
    machines: Annotated[int | None, typer.Option(help="Machines per job (default: a mix of "
                                                  "4-64).")] = None,
    faults: Annotated[int, typer.Option(help="Jobs with one fault each.")] = 8,
    fault_free: Annotated[int, typer.Option(help="Fault-free jobs.")] = 2,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    duration_s: Annotated[int, typer.Option(help="Seconds per job.")] = 900,
    fmt: Annotated[TableFormat, typer.Option("--format", help="Table format.")] =
        TableFormat.parquet,
) -> None:
    """Write labelled synthetic traces: OUT/metrics.{parquet,csv} and OUT/faults.csv."""
    import pandas as pd

    from mlsyskit.training.minder.generator import generate_set

    if machines is not None and not 4 <= machines <= 1024:
        raise ConfigError(f"--machines must be in [4, 1024]; got {machines}")
    choices = (machines,) if machines else (4, 8, 16, 32, 64)
    traces = generate_set(faults, fault_free, seed, machine_choices=choices,
                          duration_s=duration_s).traces
    tables, labels = [], []
    for i, trace in enumerate(traces):
        table = trace.table()
        table["job"] = f"job{i:04d}"
        tables.append(table)
        lab = trace.faults_frame()
        lab["job"] = f"job{i:04d}"
        labels.append(lab)
    out.mkdir(parents=True, exist_ok=True)
    metrics = pd.concat(tables, ignore_index=True)
    for column in ("machine", "metric", "group"):
        metrics[column] = metrics[column].astype(str)
    path = out / f"metrics.{fmt.value}"
    if fmt is TableFormat.parquet:
        metrics.to_parquet(path, index=False)
    else:
        metrics.to_csv(path, index=False)
    pd.concat(labels, ignore_index=True).to_csv(out / "faults.csv", index=False)
    console.print(f"wrote {path} ({len(metrics)} rows, {len(traces)} jobs) and "
                  f"{out / 'faults.csv'}", highlight=False)


@app.command()
def train(
    metrics: Annotated[Path, typer.Option(help="Long metric table (CSV or Parquet) of normal "
                                          "or labelled jobs.")],
    model: Annotated[Path, typer.Option(help="Where to save the model.")] = Path("minder.pt"),
    faults: Annotated[Path | None, typer.Option(help="faults.csv: learn the metric priority "
                                                "from these labels.")] = None,
    calibrate_metrics: Annotated[Path | None, typer.Option(help="Separate labelled table to "
                                                           "calibrate the threshold on.")] = None,
    calibrate_faults: Annotated[Path | None, typer.Option(help="faults.csv of "
                                                          "--calibrate-metrics.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Fit the per-metric LSTM-VAEs (and priority, threshold) and save the model."""
    from mlsyskit.training.minder.detector import Minder
    from mlsyskit.training.minder.evaluate import read_faults
    from mlsyskit.training.minder.frame import read_table
    from mlsyskit.training.minder.pipeline import job_frames

    if (calibrate_metrics is None) != (calibrate_faults is None):
        raise ConfigError("--calibrate-metrics and --calibrate-faults go together")
    jobs = job_frames(read_table(metrics))
    frames = [f for _, f in jobs]
    labels = _labels_per_job(jobs, read_faults(faults)) if faults else None
    minder = Minder(random_state=seed).fit(frames, labels)
    if calibrate_metrics is not None and calibrate_faults is not None:
        cal = job_frames(read_table(calibrate_metrics))
        report = minder.calibrate([f for _, f in cal],
                                  _labels_per_job(cal, read_faults(calibrate_faults)))
        console.print(f"calibration F1 {report.overall.f1:.3f} at scale {minder.scale_}",
                      highlight=False)
    minder.save(model)
    console.print(f"saved {model}; metric order {minder.order_}", highlight=False)


def _labels_per_job(jobs: list[tuple[str, MetricFrame]],
                    faults: list[FaultLabel]) -> list[list[FaultLabel]]:
    out = []
    for _, frame in jobs:
        names = set(frame.machines)
        out.append([f for f in faults if f.machine in names])
    return out


@app.command()
def detect(
    metrics: Annotated[Path, typer.Option(help="Long metric table (CSV or Parquet).")],
    model: Annotated[Path | None, typer.Option(help="Model from 'minder train' (default: "
                                               "train on the input).")] = None,
    out: Annotated[Path | None, typer.Option(help="alerts.jsonl (default: stdout).")] = None,
    span_s: Annotated[float, SPAN] = 900.0,
    interval_s: Annotated[float, INTERVAL] = 480.0,
    continuity_s: Annotated[float | None, CONTINUITY] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Detect faulty machines in a stored table; alerts as JSON lines."""
    from mlsyskit.training.minder.alerts import write_jsonl
    from mlsyskit.training.minder.frame import read_table
    from mlsyskit.training.minder.pipeline import detect_frame, job_frames

    table = read_table(metrics)
    minder = _load_or_fit(model, table, continuity_s, seed)
    schedule = _schedule(span_s, interval_s)
    wanted = list(minder.scorer_.metrics_)
    alerts = [a for job, frame in job_frames(table, wanted)
              for a in detect_frame(minder, frame, schedule, job)]
    if out is None:
        write_jsonl(alerts, sys.stdout)
    else:
        with out.open("w", encoding="utf-8") as handle:
            write_jsonl(alerts, handle)
        console.print(f"{len(alerts)} alert(s) written to {out}", highlight=False)


@app.command()
def evaluate(
    metrics: Annotated[Path, typer.Option(help="Long metric table (CSV or Parquet).")],
    faults: Annotated[Path, typer.Option(help="faults.csv: machine, fault_type, start, end.")],
    model: Annotated[Path | None, typer.Option(help="Model (default: train on the input).")
                     ] = None,
    grace_s: Annotated[float, typer.Option(help="An alert up to this long after a fault's "
                                           "end still counts.")] = 60.0,
    span_s: Annotated[float, SPAN] = 900.0,
    interval_s: Annotated[float, INTERVAL] = 480.0,
    continuity_s: Annotated[float | None, CONTINUITY] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as "
                                                  "JSON.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Precision, recall, F1 (overall and per fault type) and detection delay."""
    from rich.table import Table

    from mlsyskit.training.minder.evaluate import match_job, read_faults, summarise
    from mlsyskit.training.minder.frame import read_table
    from mlsyskit.training.minder.pipeline import detect_frame, job_frames

    table = read_table(metrics)
    labels = read_faults(faults)
    minder = _load_or_fit(model, table, continuity_s, seed)
    schedule = _schedule(span_s, interval_s)
    jobs = job_frames(table, list(minder.scorer_.metrics_))
    per_job = _labels_per_job(jobs, labels)
    outcomes = [match_job(detect_frame(minder, frame, schedule, job), lab, grace_s)
                for (job, frame), lab in zip(jobs, per_job, strict=True)]
    report = summarise(outcomes)
    view = Table(title=f"Minder on {len(jobs)} job(s)")
    for column in ("fault type", "precision", "recall", "F1", "TP", "FP", "FN"):
        view.add_column(column)
    for name, sc in [("overall", report.overall), *sorted(report.by_type.items())]:
        view.add_row(name, f"{sc.precision:.3f}", f"{sc.recall:.3f}", f"{sc.f1:.3f}",
                     str(sc.tp), str(sc.fp), str(sc.fn))
    console.print(view)
    console.print(f"detection delay: mean {report.mean_delay_s:.1f} s, median "
                  f"{report.median_delay_s:.1f} s", highlight=False)
    if json_out is not None:
        json_out.write_text(json.dumps(report.as_dict(), indent=2))


@app.command()
def watch(
    prometheus: Annotated[str, typer.Option(help="Prometheus base URL, e.g. "
                                            "http://127.0.0.1:9090.")],
    query: Annotated[list[str] | None, typer.Option(help="METRIC=PROMQL (repeatable); default: "
                                                    "the lab's metrics.")] = None,
    model: Annotated[Path | None, typer.Option(help="Model from 'minder train' (default: fit "
                                               "on the first span of data).")] = None,
    webhook: Annotated[str | None, typer.Option(help="POST alerts here as JSON.")] = None,
    machine_label: Annotated[str, typer.Option(help="Label naming the machine.")] = "instance",
    group_label: Annotated[str | None, typer.Option(help="Label naming the peer group.")
                           ] = None,
    span_s: Annotated[float, SPAN] = 900.0,
    interval_s: Annotated[float, INTERVAL] = 480.0,
    continuity_s: Annotated[float | None, CONTINUITY] = None,
    passes: Annotated[int | None, typer.Option(help="Stop after this many passes.")] = None,
) -> None:
    """Watch a Prometheus server: a pass every --interval-s; alerts to stdout or --webhook."""
    import time

    from mlsyskit.training.minder.alerts import post_webhook, write_jsonl
    from mlsyskit.training.minder.detector import Minder
    from mlsyskit.training.minder.frame import align
    from mlsyskit.training.minder.lab import LAB_QUERIES
    from mlsyskit.training.minder.pipeline import watch as run_watch
    from mlsyskit.training.minder.sources import PrometheusSource

    queries = dict(LAB_QUERIES)
    if query:
        queries = {}
        for item in query:
            name, sep, promql = item.partition("=")
            if not sep or not name or not promql:
                raise ConfigError(f"--query must be METRIC=PROMQL; got {item!r}")
            queries[name.strip()] = promql.strip()
    source = PrometheusSource(prometheus, queries, machine_label, group_label)
    schedule = _schedule(span_s, interval_s)
    if model is not None:
        minder = Minder.load(model)
    else:
        now = time.time()
        frame = align(source.fetch(now - span_s, now), metrics=list(queries))
        console.print("[dim]no --model: fitted on the last span (assumed normal)[/]",
                      highlight=False)
        minder = Minder(num_metrics=len(queries)).fit([frame])
    if continuity_s is not None:
        minder.continuity_s = continuity_s

    def emit(alert: object) -> None:
        if webhook:
            post_webhook([alert], webhook)  # type: ignore[list-item]
        write_jsonl([alert], sys.stdout)  # type: ignore[list-item]

    run_watch(minder, source, schedule, emit, max_passes=passes)


@app.command()
def lab(
    workers: Annotated[int, typer.Option(help="Training processes (2-8).")] = 4,
    fault: Annotated[list[LabFault] | None, typer.Option(
        help="Fault to inject, repeatable (in turn, each on the next rank): 'slow' (6x "
             "compute), 'pause' (SIGSTOP), 'hog' (busy loops pinned to the worker's core). "
             "Default: slow.")] = None,
    victim: Annotated[int, typer.Option(help="Rank of the (first) faulty worker.")] = 1,
    hogs: Annotated[int, typer.Option(help="Busy-loop processes of a 'hog' fault (1-16).")] = 8,
) -> None:
    """Live lab: gloo job + Prometheus + injected fault(s); does Minder name the worker?"""
    from mlsyskit.training.minder.lab import LabConfig, run_lab

    config = LabConfig(num_workers=workers, faults=tuple(fault or [LabFault.slow]),
                       victim=victim, num_hogs=hogs)
    report = run_lab(config)
    for run in report.runs:
        console.print(run.summary(), highlight=False)
        if run.alert is not None:
            console.print(run.alert.to_json(), highlight=False)
    raise typer.Exit(0 if report.detected else 1)
