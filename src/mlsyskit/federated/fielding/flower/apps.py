"""Fielding's Flower ``ServerApp`` and ``ClientApp`` for the benchmark scenarios.

Both read their settings once from ``context.run_config`` (falling back to the defaults they
were built with) into frozen :class:`FlowerRun` / :class:`FieldingConfig` values. The same
objects run in Flower's simulation engine (:func:`run_flower_simulation`) and in a real
deployment: ``flwr run`` with a SuperLink and SuperNodes started with
``--node-config "partition-id=I num-partitions=N"`` (module-level ``server_app`` and
``client_app`` below are the components a ``pyproject.toml`` points to).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from mlsyskit.errors import ConfigError
from mlsyskit.federated.fielding.clustering import client_should_report, label_histogram
from mlsyskit.federated.fielding.config import FieldingConfig
from mlsyskit.federated.fielding.flower.records import from_record, to_record
from mlsyskit.federated.fielding.flower.strategy import FieldingStrategy
from mlsyskit.federated.fielding.harness import build_scenario, model_spec_for
from mlsyskit.federated.fielding.model import evaluate, init_params, train_local
from mlsyskit.federated.fielding.names import ScenarioName, StrategyName
from mlsyskit.federated.fielding.policies import make_policy
from mlsyskit.federated.fielding.scenarios import Scenario


@dataclass(frozen=True)
class FlowerRun:
    """What a Flower run of a benchmark scenario needs (run_config keys in brackets)."""

    scenario: ScenarioName = ScenarioName.DIGITS  # [scenario]
    strategy: StrategyName = StrategyName.FIELDING  # [strategy]
    num_clients: int = 20  # [num-clients], must equal the number of SuperNodes
    num_rounds: int = 30  # [num-server-rounds]
    clients_per_round: int = 8  # [clients-per-round]
    seed: int = 0  # [seed]
    malicious_fraction: float = 0.0  # [malicious]
    history_file: str = ""  # [history-file], where the ServerApp writes its per-round history

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, object], defaults: FlowerRun) -> FlowerRun:
        keys = {"scenario": "scenario", "strategy": "strategy", "num-clients": "num_clients",
                "num-server-rounds": "num_rounds", "clients-per-round": "clients_per_round",
                "seed": "seed", "malicious": "malicious_fraction", "history-file": "history_file"}
        types = {f.name: f.type for f in fields(cls)}
        values: dict[str, object] = {}
        for key, name in keys.items():
            if key not in run_config:
                continue
            raw = run_config[key]
            try:
                kind = str(types[name])
                values[name] = (
                    ScenarioName(str(raw)) if "ScenarioName" in kind
                    else StrategyName(str(raw)) if "StrategyName" in kind
                    else int(str(raw)) if kind == "int"
                    else str(raw) if kind == "str" else float(str(raw))
                )
            except ValueError as exc:
                raise ConfigError(f"run_config {key!r} is invalid: {raw!r}") from exc
        return replace(defaults, **values)  # type: ignore[arg-type]


@lru_cache(maxsize=4)
def _scenario(run: FlowerRun) -> Scenario:
    return build_scenario(run.scenario, run.seed, num_clients=run.num_clients,
                          num_rounds=run.num_rounds, malicious_fraction=run.malicious_fraction)


def build_server_app(
    defaults: FlowerRun = FlowerRun(),
    fielding: FieldingConfig | None = None,
    sink: list[FieldingStrategy] | None = None,
) -> ServerApp:
    """A ServerApp running :class:`FieldingStrategy`; ``sink`` receives the strategy object
    (with its ``history``) when the run ends, for in-process callers."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run = FlowerRun.from_run_config(context.run_config, defaults)
        cfg = fielding if fielding is not None else FieldingConfig.from_run_config(
            context.run_config)
        cfg = replace(cfg, seed=run.seed)
        scenario = _scenario(run)
        policy = make_policy(run.strategy, cfg, truth=scenario.true_groups,
                             num_true_groups=scenario.spec.num_true_groups)
        strategy = FieldingStrategy(
            cfg, run.clients_per_round, policy, min_available_nodes=run.num_clients,
            min_train_nodes=1, min_evaluate_nodes=1,
        )
        init = init_params(model_spec_for(scenario.dataset), run.seed * 1000)
        strategy.start(grid=grid, initial_arrays=to_record(init), num_rounds=run.num_rounds)
        if sink is not None:
            sink.append(strategy)
        if run.history_file:
            Path(run.history_file).write_text(json.dumps(strategy.history) + "\n")

    return app


def _client_id(context: Context) -> int:
    return int(str(context.node_config["partition-id"]))


def build_client_app(defaults: FlowerRun = FlowerRun()) -> ClientApp:
    """A ClientApp holding one client of a benchmark scenario (its ``partition-id``)."""
    app = ClientApp()

    @app.query("labeldist")
    def labeldist(msg: Message, context: Context) -> Message:
        run = FlowerRun.from_run_config(context.run_config, defaults)
        cfg = FieldingConfig.from_run_config(context.run_config)
        scenario, i = _scenario(run), _client_id(context)
        data_round = int(str(msg.content["config"]["data-round"]))
        data = scenario.client(i, data_round)
        c = scenario.dataset.num_classes
        if scenario.malicious[i]:
            rng = np.random.default_rng([scenario.seed, 4, i, data_round])
            hist = rng.dirichlet(np.ones(c))
        else:
            hist = label_histogram(data.y_train, c)
        last_rec = context.state.array_records.get("fielding-last")
        last = last_rec["hist"].numpy() if last_rec is not None else None
        drifted = client_should_report(hist, last, len(data.y_train), cfg)
        content = RecordDict({"meta": MetricRecord({
            "client-id": i, "drifted": int(drifted), "num-examples": len(data.y_train)})})
        if drifted:
            record = ArrayRecord({"hist": _array(hist)})
            content["labeldist"] = record
            context.state["fielding-last"] = ArrayRecord({"hist": _array(hist)})
        return Message(content, reply_to=msg)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        run = FlowerRun.from_run_config(context.run_config, defaults)
        scenario, i = _scenario(run), _client_id(context)
        t = int(str(msg.content["config"]["server-round"]))
        data = scenario.client(i, t)
        spec = model_spec_for(scenario.dataset)
        params = from_record(msg.content["arrays"])  # type: ignore[arg-type]
        seed = run.seed * 7919 + t * 1009 + i  # the simulator's seed for this client and round
        new = train_local(params, data.x_train, data.y_train, spec, seed=seed)
        metrics = MetricRecord({"num-examples": len(data.y_train), "client-id": i})
        return Message(RecordDict({"arrays": to_record(new), "metrics": metrics}), reply_to=msg)

    @app.evaluate()
    def evaluate_fn(msg: Message, context: Context) -> Message:
        run = FlowerRun.from_run_config(context.run_config, defaults)
        scenario, i = _scenario(run), _client_id(context)
        t = int(str(msg.content["config"]["server-round"]))
        data = scenario.client(i, t)
        params = from_record(msg.content["arrays"])  # type: ignore[arg-type]
        _, correct = evaluate(params, data.x_test, data.y_test)
        metrics = MetricRecord({
            "accuracy": float(correct.mean()), "num-examples": len(data.y_test),
            "client-id": i, "benign": int(not scenario.malicious[i]),
        })
        return Message(RecordDict({"metrics": metrics}), reply_to=msg)

    return app


def _array(values: np.ndarray) -> object:
    from flwr.app import Array

    return Array(np.asarray(values, dtype=np.float64))


def run_flower_simulation(
    run: FlowerRun, fielding: FieldingConfig | None = None
) -> list[dict[str, float]]:
    """Run a scenario in Flower's simulation engine (Ray, one virtual SuperNode per client)
    and return the strategy's per-round history (accuracy, re-clusterings, moves)."""
    from flwr.simulation import run_simulation

    sink: list[FieldingStrategy] = []
    run_simulation(
        server_app=build_server_app(run, fielding, sink),
        client_app=build_client_app(run),
        num_supernodes=run.num_clients,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                        "init_args": {"num_cpus": 2, "include_dashboard": False}},
    )
    if not sink:
        raise ConfigError("the Flower simulation ended without running the strategy")
    return sink[0].history


# Components for a Flower app project (pyproject.toml [tool.flwr.app.components]).
server_app = build_server_app()
client_app = build_client_app()
