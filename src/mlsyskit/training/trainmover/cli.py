"""``mlsyskit trainmover``: run a job with live replacement, move or kill its ranks, watch it."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from mlsyskit.clikit import console, new_app
from mlsyskit.errors import ConfigError

app = new_app("TrainMover: replace a machine of a running training job without a restart.")

RunDir = Annotated[
    Path, typer.Option("--run-dir", help="Folder of the job (logs, checkpoints, store port).")
]
DEFAULT_RUN_DIR = Path("trainmover-run")


class StrategyName(StrEnum):
    trainmover = "trainmover"
    naive = "naive"
    save_restart = "save-restart"
    checkpoint_restart = "checkpoint-restart"


def _training_args(args: list[str]) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="trainmover run ... --", add_help=False)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--task", default="mlsyskit.training.trainmover.task:mlp_task")
    parser.add_argument("--step-delay", type=float, default=0.05, dest="step_delay_s")
    parser.add_argument("--checkpoint-every", type=int, default=0)
    try:
        parsed, unknown = parser.parse_known_args(args)
    except SystemExit as exc:  # argparse exits on a bad value; make it our error
        raise ConfigError(f"bad training arguments {args}") from exc
    if unknown:
        raise ConfigError(
            f"unknown training arguments {unknown}; known: --steps --hidden --layers --batch "
            "--lr --seed --task --step-delay --checkpoint-every"
        )
    return vars(parsed)


@app.command(
    "run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def run(
    ctx: typer.Context,
    workers: Annotated[int, typer.Option(help="Training processes (ranks).")] = 3,
    standby: Annotated[int, typer.Option(help="Warm standby processes.")] = 1,
    pp: Annotated[int, typer.Option(help="Pipeline stages (1 or 2).")] = 1,
    strategy: Annotated[
        StrategyName, typer.Option(help="How ranks are replaced.")
    ] = StrategyName.trainmover,
    run_dir: RunDir = DEFAULT_RUN_DIR,
) -> None:
    """Start a job and serve it until its last step. Training args go after ``--``."""
    from mlsyskit.training.trainmover.api import TrainMoverJob
    from mlsyskit.training.trainmover.config import JobConfig
    from mlsyskit.training.trainmover.service import serve
    from mlsyskit.training.trainmover.strategies import (
        CheckpointRestart,
        LiveMigration,
        ReplacementStrategy,
        SaveRestart,
    )

    train = _training_args(list(ctx.args))
    config = JobConfig(num_workers=workers, num_standby=standby, pp=pp, **train)  # type: ignore[arg-type]
    chosen: ReplacementStrategy = {
        StrategyName.trainmover: LiveMigration(),
        StrategyName.naive: LiveMigration(two_phase=False, sandbox=False),
        StrategyName.save_restart: SaveRestart(),
        StrategyName.checkpoint_restart: CheckpointRestart(max(1, config.checkpoint_every or 10)),
    }[strategy]
    # SIGTERM unwinds like Ctrl-C, so the job's processes are stopped on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with TrainMoverJob(config, chosen, run_dir) as job:
        console.print(
            f"job running: {workers} workers, {standby} standby, pp={pp}, strategy "
            f"{chosen.name}; run dir {run_dir} (use 'trainmover migrate/kill/status')"
        )
        serve(job, lambda text: console.print(text, highlight=False))
        console.print(f"job finished: {config.steps} steps")


@app.command("migrate")
def migrate(
    rank: Annotated[int, typer.Option(help="Rank to move off its process.")],
    run_dir: RunDir = DEFAULT_RUN_DIR,
) -> None:
    """Planned move of one rank of the running job (maintenance)."""
    from mlsyskit.training.trainmover.service import JobClient

    answer = JobClient(run_dir).request("migrate", rank=rank)
    console.print_json(json.dumps(answer))
    if not answer["ok"]:
        raise typer.Exit(1)


@app.command("rebalance")
def rebalance(run_dir: RunDir = DEFAULT_RUN_DIR) -> None:
    """Move the straggler rank (if any) to a standby."""
    from mlsyskit.training.trainmover.service import JobClient

    console.print_json(json.dumps(JobClient(run_dir).request("rebalance")))


@app.command("kill")
def kill(
    rank: Annotated[int, typer.Option(help="Rank whose process gets SIGKILL.")],
    run_dir: RunDir = DEFAULT_RUN_DIR,
) -> None:
    """Fault injection: SIGKILL one rank; the running job detects it and recovers."""
    from mlsyskit.training.trainmover.service import JobClient

    proc = JobClient(run_dir).kill(rank)
    console.print(f"killed rank {rank} (process {proc})")


@app.command("status")
def status(run_dir: RunDir = DEFAULT_RUN_DIR) -> None:
    """Membership, generation and per-rank progress of the running job."""
    from mlsyskit.training.trainmover.service import JobClient

    console.print_json(json.dumps(JobClient(run_dir).status()))
