"""``mlsyskit fielding``: run one strategy or compare all of them on a drift scenario."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from mlsyskit.clikit import console, new_app
from mlsyskit.errors import ConfigError
from mlsyskit.federated.fielding.names import ScenarioName, StrategyName

if TYPE_CHECKING:
    from mlsyskit.federated.fielding.representation import Representation
    from mlsyskit.federated.fielding.simulator import RunResult

app = new_app("Fielding: clustered federated learning with selective re-clustering on drift.")

ScenarioOpt = Annotated[ScenarioName, typer.Option(help="Drift scenario.")]
ClientsOpt = Annotated[int | None, typer.Option("--clients", help="Number of clients.")]
RoundsOpt = Annotated[int | None, typer.Option("--rounds", help="Number of rounds.")]
MaliciousOpt = Annotated[
    float, typer.Option("--malicious", help="Fraction of clients sending false histograms.")
]
SeedOpt = Annotated[int, typer.Option(help="Seed of the scenario, sampling and models.")]
PerRoundOpt = Annotated[int, typer.Option("--per-round", help="Clients sampled per round.")]
AlphaOpt = Annotated[
    float | None, typer.Option(help="Dirichlet concentration of client label mixes.")
]
FeaturesOpt = Annotated[
    bool,
    typer.Option("--features", help="Clients also report a 4x4 pooled mean image (sees "
                 "feature drift such as rotation)."),
]
ClassFeaturesOpt = Annotated[
    bool,
    typer.Option("--class-features", help="Clients also report per-class 4x4 pooled mean "
                 "images weighted by class share (sees concept drift such as label swaps)."),
]


def _check(clients: int | None, rounds: int | None, malicious: float, per_round: int,
           features: bool = False, class_features: bool = False) -> None:
    if features and class_features:
        raise ConfigError("pick at most one of --features and --class-features")
    if clients is not None and clients < 2:
        raise ConfigError(f"--clients must be >= 2; got {clients}")
    if rounds is not None and rounds < 1:
        raise ConfigError(f"--rounds must be >= 1; got {rounds}")
    if not 0.0 <= malicious < 1.0:
        raise ConfigError(f"--malicious must be in [0, 1); got {malicious}")
    if per_round < 1:
        raise ConfigError(f"--per-round must be >= 1; got {per_round}")


def _representation(features: bool, class_features: bool = False) -> Representation:
    from mlsyskit.federated.fielding.representation import Representation

    if class_features:
        return Representation.LABELS_AND_CLASS_FEATURES
    return Representation.LABELS_AND_FEATURES if features else Representation.LABELS


def _row(r: RunResult) -> list[str]:
    return [
        r.strategy, f"{r.final_accuracy:.4f}", str(r.num_global_reclusters), str(r.num_moves),
        str(int(r.num_clusters[-1])), f"{r.time_s[-1]:.1f}",
    ]


def _table(title: str, results: list[RunResult]) -> Table:
    table = Table(title=title)
    for col in ("strategy", "final acc", "global re-clusterings", "moves", "K at end",
                "simulated s"):
        table.add_column(col)
    for r in results:
        table.add_row(*_row(r))
    return table


@app.command()
def run(
    scenario: ScenarioOpt = ScenarioName.SCHEDULED,
    strategy: Annotated[StrategyName, typer.Option(help="Strategy.")] = StrategyName.FIELDING,
    clients: ClientsOpt = None,
    rounds: RoundsOpt = None,
    malicious: MaliciousOpt = 0.0,
    seed: SeedOpt = 0,
    per_round: PerRoundOpt = 20,
    alpha: AlphaOpt = None,
    features: FeaturesOpt = False,
    class_features: ClassFeaturesOpt = False,
    out: Annotated[Path | None, typer.Option(help="Write the curve as JSON here.")] = None,
) -> None:
    """Run one strategy on a scenario (in-process simulator) and print its summary."""
    from mlsyskit.federated.fielding.harness import RunRequest, run_many

    _check(clients, rounds, malicious, per_round, features, class_features)
    req = RunRequest(scenario, strategy, seed, clients, rounds, per_round, malicious, alpha,
                     representation=_representation(features, class_features))
    result = run_many([req], strategy.value)[0]
    console.print(_table(f"{scenario.value}: {strategy.value}", [result]))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(_curve(result), indent=1) + "\n")
        console.print(f"curve written to {out}")


def _curve(r: RunResult) -> dict[str, object]:
    return {
        "strategy": r.strategy, "final_accuracy": r.final_accuracy,
        "global_reclusters": r.num_global_reclusters, "moves": r.num_moves,
        "rounds": r.rounds.tolist(), "accuracy": r.accuracy.tolist(), "time_s": r.time_s.tolist(),
        "num_clusters": r.num_clusters.tolist(),
    }


@app.command()
def compare(
    scenario: ScenarioOpt = ScenarioName.SCHEDULED,
    clients: ClientsOpt = None,
    rounds: RoundsOpt = None,
    malicious: MaliciousOpt = 0.0,
    seed: SeedOpt = 0,
    per_round: PerRoundOpt = 20,
    alpha: AlphaOpt = None,
    features: FeaturesOpt = False,
    class_features: ClassFeaturesOpt = False,
    out: Annotated[Path, typer.Option(help="Folder for curves JSON and plot.")] = Path(
        "fielding-compare"
    ),
) -> None:
    """Run every strategy on one scenario: a table, curves (JSON) and accuracy plots."""
    from mlsyskit.federated.fielding.harness import RunRequest, run_many
    from mlsyskit.report.plotting import new_figure, save_figure

    _check(clients, rounds, malicious, per_round, features, class_features)
    rep = _representation(features, class_features)
    reqs = [RunRequest(scenario, s, seed, clients, rounds, per_round, malicious, alpha,
                       representation=rep) for s in StrategyName]
    results = run_many(reqs, "compare")
    console.print(_table(f"{scenario.value}: all strategies (seed {seed})", results))
    out.mkdir(parents=True, exist_ok=True)
    (out / "curves.json").write_text(json.dumps([_curve(r) for r in results], indent=1) + "\n")
    fig = new_figure(11.0, 4.2)
    ax_r, ax_t = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for r in results:
        style = "-" if r.strategy == StrategyName.FIELDING.value else "--"
        ax_r.plot(r.rounds, r.accuracy, style, label=r.strategy)
        ax_t.plot(r.time_s, r.accuracy, style, label=r.strategy)
    ax_r.set_xlabel("round")
    ax_t.set_xlabel("simulated time (s)")
    ax_r.set_ylabel("benign test accuracy")
    ax_t.legend(fontsize=7)
    save_figure(fig, out / "compare.png")
    console.print(f"curves and plot written to {out}/")
