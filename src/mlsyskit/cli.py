"""The ``mlsyskit`` command: shared commands here, each area's group registered from its module."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

import mlsyskit
from mlsyskit import hardware
from mlsyskit.clikit import ErrorMappingGroup, console, err_console, new_app
from mlsyskit.errors import NotImplementedSystemError
from mlsyskit.federated.fielding.cli import app as fielding_app
from mlsyskit.serving.cli import app as serve_app
from mlsyskit.systems import SYSTEMS, get_system, system_names
from mlsyskit.training.minder.cli import app as minder_app
from mlsyskit.training.optimus.cli import app as optimus_app
from mlsyskit.training.trainmover.cli import app as trainmover_app

app = typer.Typer(
    cls=ErrorMappingGroup,
    help="mlsyskit: nine research systems for ML infrastructure and networking.",
    no_args_is_help=True,
    add_completion=False,
)
hardware_app = new_app("Browse the hardware catalogue (GPUs, host CPUs, links, SmartNICs).")
app.add_typer(hardware_app, name="hardware")
# Each area keeps its command group in its own cli module (heavy imports inside the commands).
app.add_typer(serve_app, name="serve")
app.add_typer(minder_app, name="minder")
app.add_typer(trainmover_app, name="trainmover")
app.add_typer(optimus_app, name="optimus")
app.add_typer(fielding_app, name="fielding")


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"mlsyskit {mlsyskit.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Print version."),
    ] = False,
    hardware_files: Annotated[
        list[Path] | None,
        typer.Option(
            "--hardware",
            help="Extra hardware TOML file (repeatable); its entries add to or override the "
            "built-in catalogue.",
            exists=False,
        ),
    ] = None,
) -> None:
    hardware.use_hardware_files(hardware_files or [])
    if hardware_files:
        hardware.get_catalogue()  # validate now, so a bad file fails before any work


@hardware_app.command("list")
def hardware_list(
    kind: Annotated[
        str | None, typer.Option(help="Only this kind: gpu, cpu, link or smartnic.")
    ] = None,
) -> None:
    """List the devices in the catalogue with their main numbers."""
    catalogue = hardware.get_catalogue()
    if kind is not None and kind not in catalogue.devices:
        from mlsyskit.errors import UnknownNameError

        raise UnknownNameError("device kind", kind, catalogue.devices)
    table = Table(title="Hardware catalogue")
    for column in ("kind", "name", "device", "numbers"):
        table.add_column(column)
    for device in catalogue:
        if kind is None or device.kind == kind:
            numbers = ", ".join(f"{k}={v:g}" for k, v in device.numbers().items())
            table.add_row(device.kind, device.name, device.display_name, numbers)
    console.print(table)


@hardware_app.command("show")
def hardware_show(name: Annotated[str, typer.Argument(help="Device name, e.g. t4.")]) -> None:
    """Show one device with the source of every number."""
    device = hardware.get_catalogue().get(name)
    table = Table(title=f"{device.display_name} ({device.kind} {device.name})")
    for column in ("field", "value", "source"):
        table.add_column(column)
    for field_name, value in device.numbers().items():
        table.add_row(field_name, f"{value:g}", device.sources.get(field_name, ""))
    for field_name in ("host_link", "cpu_model"):
        if hasattr(device, field_name):
            table.add_row(field_name, str(getattr(device, field_name)), "")
    console.print(table)


def _print_result(payload: dict[str, object]) -> None:
    metrics = payload["metrics"]
    assert isinstance(metrics, dict)
    paper, targets, met, simulated = (
        payload["paper"],
        payload["targets"],
        payload["target_met"],
        payload["simulated"],
    )
    assert isinstance(paper, dict) and isinstance(targets, dict) and isinstance(met, dict)
    assert isinstance(simulated, list)
    table = Table(title=f"{payload['system']} ({'quick' if payload['quick'] else 'full'})")
    table.add_column("metric", no_wrap=True)  # names are what users grep for: never cut them
    for column in ("measured", "paper", "target", "met", "clock"):
        table.add_column(column)
    for name, value in metrics.items():
        ok = met.get(name)
        table.add_row(
            name,
            f"{value:.4g}" if isinstance(value, float) else str(value),
            str(paper.get(name, "")),
            str(targets.get(name, "")),
            {True: "[green]yes[/]", False: "[red]no[/]", None: ""}[ok],
            "simulated" if name in simulated else "measured",
        )
    console.print(table)
    notes = payload.get("notes")
    if isinstance(notes, list):
        for note in notes:
            console.print(f"  - {note}", highlight=False)


@app.command()
def reproduce(
    system: Annotated[
        str, typer.Argument(help=f"One of: {', '.join(system_names())}, or 'all'.")
    ],
    quick: Annotated[
        bool, typer.Option("--quick", help="Small sizes: at most 5 minutes on 2 cores.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="Output folder (default bench/results/ for full runs)."),
    ] = None,
) -> None:
    """Run a system's benchmarks and write OUT/SYSTEM.json (+ plots)."""
    from mlsyskit.reproduce import DEFAULT_RESULTS_DIR, run_reproduce

    out_dir = out if out is not None else DEFAULT_RESULTS_DIR
    names = [s.name for s in SYSTEMS if s.reproduce_entry] if system == "all" else [system]
    if system != "all":
        get_system(system)  # unknown name: exit 2 with the list
    failures = []
    for name in names:
        console.rule(f"reproduce {name}")
        try:
            _print_result(run_reproduce(name, quick, out_dir))
        except NotImplementedSystemError:
            raise
        except Exception as exc:
            if system != "all":
                raise
            err_console.print(f"[red]{name} failed:[/] {exc}")
            failures.append(name)
    if failures:
        raise typer.Exit(1)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Report folder.")] = Path("report"),
    only: Annotated[
        list[str] | None, typer.Option(help="Run only these systems (repeatable).")
    ] = None,
) -> None:
    """Run every system's small end-to-end demo and write OUT/index.html and OUT/summary.md."""
    from mlsyskit.report import SystemSection, write_report

    selected = [get_system(n) for n in only] if only else list(SYSTEMS)
    sections = []
    for info in selected:
        if info.demo_entry is None:
            sections.append(SystemSection(info, "not implemented"))
            continue
        console.rule(f"demo {info.name}")
        started = time.perf_counter()
        try:
            result = info.demo_fn()(out / info.name)
        except Exception as exc:
            err_console.print(f"[red]{info.name} demo failed:[/] {type(exc).__name__}: {exc}")
            sections.append(
                SystemSection(info, "failed", error=f"{type(exc).__name__}: {exc}",
                              wall_s=time.perf_counter() - started)
            )
            continue
        sections.append(SystemSection(info, "ok", result, wall_s=time.perf_counter() - started))
    index = write_report(out, sections, hardware.get_catalogue())
    console.print(f"report written to {index} and {out / 'summary.md'}")
    if any(s.status == "failed" for s in sections):
        raise typer.Exit(1)


def main() -> None:
    """Console-script entry point."""
    app()
