from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from mlsyskit.federated.fielding.config import FieldingConfig, FieldingError
from mlsyskit.federated.fielding.flower.apps import FlowerRun, _scenario, build_client_app
from mlsyskit.federated.fielding.flower.records import pack_clusters, to_record, unpack_clusters
from mlsyskit.federated.fielding.flower.strategy import LABELDIST, FieldingStrategy
from mlsyskit.federated.fielding.harness import RunRequest, model_spec_for, run_strategy
from mlsyskit.federated.fielding.model import init_params
from mlsyskit.federated.fielding.names import ScenarioName, StrategyName
from mlsyskit.federated.fielding.policies import IFCAPolicy

from .fake_grid import LoopbackGrid

RUN = FlowerRun(ScenarioName.DIGITS, StrategyName.FIELDING, num_clients=10, num_rounds=5,
                clients_per_round=4, seed=0)


def test_records_roundtrip() -> None:
    models = [[np.ones(2, np.float32), np.zeros((2, 3), np.float32)],
              [np.full(2, 2.0, np.float32), np.ones((2, 3), np.float32)]]
    packed = pack_clusters(models, ["w", "b"])
    assert list(packed.keys()) == ["cluster-0/w", "cluster-0/b", "cluster-1/w", "cluster-1/b"]
    back = unpack_clusters(packed)
    for m, b in zip(models, back, strict=True):
        for x, y in zip(m, b, strict=True):
            np.testing.assert_array_equal(x, y)


def test_strategy_over_a_loopback_grid_matches_the_simulator() -> None:
    grid = LoopbackGrid(build_client_app(RUN), RUN.num_clients, {})
    strategy = FieldingStrategy(FieldingConfig(seed=0), RUN.clients_per_round,
                                min_available_nodes=10, min_train_nodes=1, min_evaluate_nodes=1)
    init = init_params(model_spec_for(_scenario(RUN).dataset), 0)
    keys = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]  # a user's state_dict names
    result = strategy.start(grid=grid, initial_arrays=to_record(init, keys),
                            num_rounds=RUN.num_rounds)
    sim = run_strategy(RunRequest(ScenarioName.DIGITS, StrategyName.FIELDING, 0, 10, 5, 4))
    flower_acc = [h["accuracy"] for h in strategy.history]
    np.testing.assert_allclose(flower_acc, sim.accuracy, rtol=0, atol=1e-12)
    assert [int(h["round"]) for h in strategy.history if h["reclustered"]] == list(
        sim.recluster_rounds)
    # histograms went to every node every round (round 1: initial + round-1 query)
    queries = [m for m in grid.sent if m.metadata.message_type == LABELDIST]
    assert len(queries) == RUN.num_clients * (RUN.num_rounds + 1)
    trains = [m for m in grid.sent if m.metadata.message_type == "train"]
    assert trains and all(list(m.content["arrays"].keys()) == keys for m in trains)
    # the result's arrays hold one model per cluster
    assert len(unpack_clusters(result.arrays)) == len(strategy._models)


def test_only_drifted_nodes_send_a_histogram() -> None:
    grid = LoopbackGrid(build_client_app(RUN), RUN.num_clients, {})
    strategy = FieldingStrategy(FieldingConfig(seed=0), 4, min_available_nodes=10)
    assert len(strategy._query(grid, 0)) == 10  # first query: everyone reports
    assert strategy._query(grid, 1) == {}  # no drift before round 2 (5 rounds, drift at 0.5)
    drifted = strategy._query(grid, 2)
    truth0, truth2 = _scenario(RUN).true_groups(0), _scenario(RUN).true_groups(2)
    assert set(drifted) <= set(np.flatnonzero(truth0 != truth2).tolist())
    assert len(drifted) >= 1


def test_loss_probe_policies_are_refused() -> None:
    with pytest.raises(FieldingError, match="IFCAPolicy"):
        FieldingStrategy(FieldingConfig(), 4, policy=IFCAPolicy(3))


def _sparse_id_app(offset: int) -> ClientApp:
    app = ClientApp()

    @app.query("labeldist")
    def labeldist(msg: Message, context: Context) -> Message:
        pid = int(str(context.node_config["partition-id"]))
        hist = np.eye(3)[pid % 3]
        return Message(RecordDict({
            "meta": MetricRecord({"client-id": offset + 10 * pid, "drifted": 1,
                                  "num-examples": 50}),
            "labeldist": ArrayRecord({"hist": Array(hist)}),
        }), reply_to=msg)

    return app


def test_any_client_ids_map_to_dense_indices_in_id_order() -> None:
    strategy = FieldingStrategy(FieldingConfig(seed=0), 2, min_available_nodes=3)
    reports = strategy._query(LoopbackGrid(_sparse_id_app(100), 3, {}), 0)
    assert sorted(reports) == [0, 1, 2]
    np.testing.assert_array_equal(reports[2].vector, [0.0, 0.0, 1.0])  # client-id 120
    with pytest.raises(FieldingError, match="client-id 5 joined after the first round"):
        strategy._query(LoopbackGrid(_sparse_id_app(5), 3, {}), 1)
