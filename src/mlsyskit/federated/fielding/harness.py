"""One entry point for a run: scenario name + strategy name + sizes -> :class:`RunResult`.

The CLI, the benchmark and the demo all go through :func:`run_strategy`, so they run the same
code with the same defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mlsyskit.federated.fielding.config import FieldingConfig
from mlsyskit.federated.fielding.data import Dataset, load_dataset
from mlsyskit.federated.fielding.model import ModelSpec
from mlsyskit.federated.fielding.policies import StrategyName, make_policy
from mlsyskit.federated.fielding.representation import Representation
from mlsyskit.federated.fielding.scenarios import Scenario, ScenarioName, scenario_spec
from mlsyskit.federated.fielding.simulator import RunResult, SimConfig, run_simulation


@dataclass(frozen=True)
class RunRequest:
    """What to run. ``None`` sizes keep the scenario's defaults."""

    scenario: ScenarioName
    strategy: StrategyName
    seed: int = 0
    num_clients: int | None = None
    num_rounds: int | None = None
    clients_per_round: int = 20
    malicious_fraction: float = 0.0
    alpha: float | None = None
    eval_every: int = 1
    ifca_clusters: int = 5
    representation: Representation = Representation.LABELS
    fielding: FieldingConfig = field(default_factory=FieldingConfig)


def build_scenario(name: ScenarioName, seed: int, **overrides: object) -> Scenario:
    """The named scenario with overrides (clients, rounds, malicious fraction, alpha)."""
    spec = scenario_spec(name, **overrides)
    return Scenario(spec, load_dataset(spec.dataset), seed)


def model_spec_for(dataset: Dataset) -> ModelSpec:
    """MLP 784-64-10 for Fashion-MNIST, 64-32-10 for digits."""
    hidden = 64 if dataset.input_dim > 100 else 32
    return ModelSpec(dataset.input_dim, dataset.num_classes, hidden=hidden)


def run_strategy(
    req: RunRequest, progress: Callable[[int], None] | None = None
) -> RunResult:
    """Build the scenario from its name and seed, the policy from its name, and run it."""
    overrides: dict[str, object] = {"malicious_fraction": req.malicious_fraction}
    if req.num_clients is not None:
        overrides["num_clients"] = req.num_clients
    if req.num_rounds is not None:
        overrides["num_rounds"] = req.num_rounds
    if req.alpha is not None:
        overrides["alpha"] = req.alpha
    scenario = build_scenario(req.scenario, req.seed, **overrides)
    spec, dataset = scenario.spec, scenario.dataset
    cfg = FieldingConfig(**{**req.fielding.__dict__, "seed": req.seed})
    policy = make_policy(
        req.strategy, cfg, truth=scenario.true_groups, num_true_groups=spec.num_true_groups,
        ifca_clusters=req.ifca_clusters,
    )
    model = model_spec_for(dataset)
    sim = SimConfig(clients_per_round=req.clients_per_round, eval_every=req.eval_every,
                    seed=req.seed, representation=req.representation)
    return run_simulation(scenario, policy, model, sim, req.strategy.value, progress)


def run_many(
    requests: Sequence[RunRequest], label: str = "fielding"
) -> list[RunResult]:
    """Run several requests with a rich progress bar over all their rounds."""
    from rich.progress import Progress

    results = []
    with Progress(transient=True) as bar:
        rounds = [r.num_rounds or 200 for r in requests]
        task = bar.add_task(label, total=sum(rounds))
        for req, num in zip(requests, rounds, strict=True):
            bar.update(task, description=f"{req.scenario.value}/{req.strategy.value}/s{req.seed}")
            done = bar.tasks[task].completed

            def advance(t: int, base: float = done) -> None:
                bar.update(task, completed=base + t)

            results.append(run_strategy(req, advance))
            bar.update(task, completed=done + num)
    return results
