"""``FieldingStrategy``: Flower's FedAvg extended to K cluster models.

Each round, before training, the strategy sends a tiny ``query.labeldist`` message to *every*
connected node; a node answers with its new label histogram only when its local drift test
fired (the test runs client-side: ``clustering.client_should_report``).
The reports drive the same policy object the in-process simulator uses (by default Fielding's
selective re-clustering), then each sampled node gets its cluster's model to train, and
``aggregate_train`` averages per cluster. The round's returned ``ArrayRecord`` packs every
cluster model (keys ``cluster-K/J``).

Usage in a user's ServerApp::

    strategy = FieldingStrategy(FieldingConfig.from_run_config(context.run_config),
                                clients_per_round=10)
    strategy.start(grid=grid, initial_arrays=ArrayRecord(init_params), num_rounds=50)
"""

from __future__ import annotations

from collections.abc import Iterable
from logging import INFO

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.common import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.serverapp.strategy.strategy_utils import sample_nodes

from mlsyskit.federated.fielding.clustering import Report
from mlsyskit.federated.fielding.config import FieldingConfig, FieldingError
from mlsyskit.federated.fielding.flower.records import from_record, pack_clusters, to_record
from mlsyskit.federated.fielding.params import Params, mix_models, weighted_average
from mlsyskit.federated.fielding.policies import (
    ClusterPolicy,
    FieldingPolicy,
    RoundContext,
)

LABELDIST = f"{MessageType.QUERY}.labeldist"


def _float(value: object) -> float:
    if isinstance(value, int | float):
        return float(value)
    raise FieldingError(f"expected a number in a client reply, got {value!r}")


def _int(value: object) -> int:
    return int(_float(value))


class FieldingStrategy(FedAvg):
    """Clustered FedAvg with Fielding's drift handling.

    Parameters
    ----------
    config
        Fielding's parameters (parse a Flower ``run_config`` with
        :meth:`FieldingConfig.from_run_config`).
    clients_per_round
        Nodes sampled for training each round (seeded by ``config.seed``, so a run is
        reproducible and matches the in-process simulator).
    policy
        Cluster policy; default :class:`FieldingPolicy` (``config``). Baselines that need no
        loss probes (FedAvg, cluster-once, moves-only, global-every-drift, an oracle) work too;
        IFCA and FedDrift-lite need clients to evaluate every model and raise here.
    query_timeout_s
        How long to wait for the histogram replies of a round.
    **fedavg_kwargs
        Passed to :class:`flwr.serverapp.strategy.FedAvg` (e.g. ``min_available_nodes``).

    Raises
    ------
    FieldingError
        The policy needs loss probes, or nodes answer inconsistently.
    """

    def __init__(
        self,
        config: FieldingConfig,
        clients_per_round: int,
        policy: ClusterPolicy | None = None,
        query_timeout_s: float = 600.0,
        **fedavg_kwargs: object,
    ) -> None:
        super().__init__(**fedavg_kwargs)  # type: ignore[arg-type]
        self.config = config
        self.clients_per_round = clients_per_round
        self.policy = policy if policy is not None else FieldingPolicy(config)
        if self.policy.needs_loss_probe:
            raise FieldingError(
                f"{type(self.policy).__name__} needs every client to evaluate every model; "
                "the Flower adapter runs policies without loss probes only"
            )
        self.query_timeout_s = query_timeout_s
        self._rng = np.random.default_rng([config.seed, 5])
        self._models: list[Params] = []
        self._keys: list[str] = []
        self._index: dict[int, int] = {}  # reported client-id -> dense index 0..N-1
        self._node_of: dict[int, int] = {}  # dense index -> node id
        self._pending: dict[int, int] = {}  # node id -> cluster trained this round
        self._num_clients = 0
        self.history: list[dict[str, float]] = []

    def summary(self) -> None:
        super().summary()
        log(INFO, "\t└──> Fielding: %s, %d clients per round", self.config.recluster.value,
            self.clients_per_round)

    # --- drift reports ---------------------------------------------------------------------
    def _query(self, grid: Grid, data_round: int) -> dict[int, Report]:
        # every node must answer the first query (initial clustering): wait until the
        # expected number of nodes is connected, as FedAvg's sampling does
        _, nodes = sample_nodes(grid, self.min_available_nodes, 0)
        msgs = [
            Message(RecordDict({"config": ConfigRecord({"data-round": data_round})}),
                    dst_node_id=node, message_type=LABELDIST)
            for node in nodes
        ]
        replies = list(grid.send_and_receive(msgs, timeout=self.query_timeout_s))
        answers: list[tuple[int, Message]] = []
        for reply in replies:
            if reply.has_error():
                raise FieldingError(
                    f"node {reply.metadata.src_node_id} failed the label query: "
                    f"{reply.error.reason}"
                )
            answers.append((_int(reply.content.metric_records["meta"]["client-id"]), reply))
        if not self._index:  # the client set is fixed by the first query, in client-id order
            self._index = {cid: i for i, cid in enumerate(sorted(c for c, _ in answers))}
        reports: dict[int, Report] = {}
        for cid, reply in answers:
            if cid not in self._index:
                raise FieldingError(
                    f"client-id {cid} joined after the first round; Fielding's client set is "
                    "fixed when it first clusters"
                )
            i = self._index[cid]
            self._node_of[i] = reply.metadata.src_node_id
            metrics = reply.content.metric_records["meta"]
            if _int(metrics["drifted"]):
                vector = reply.content.array_records["labeldist"]["hist"].numpy()
                reports[i] = Report(np.asarray(vector, float), _int(metrics["num-examples"]))
        self._num_clients = len(self._index)
        return reports

    # --- training -------------------------------------------------------------------------
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Query all nodes' label histograms, update clusters, send each sampled node its
        cluster's model."""
        if server_round == 1:
            self._keys = list(arrays.keys())
            self._models = [from_record(arrays)]
            first = self._query(grid, 0)
            decision = self.policy.start(first, self._num_clients)
            self._apply(decision.mixing)
        reports = self._query(grid, server_round)
        n = self._num_clients
        sampled = np.sort(self._rng.choice(n, min(self.clients_per_round, n), replace=False))

        def no_probe(i: int, k: int) -> float:
            raise FieldingError("loss probes are not available in the Flower adapter")

        decision = self.policy.step(
            RoundContext(server_round, reports, sampled, no_probe, len(self._models))
        )
        self._apply(decision.mixing)
        self.history.append({
            "round": float(server_round), "reclustered": float(decision.reclustered),
            "moves": float(decision.num_moves), "reports": float(len(reports)),
            "num_clusters": float(len(self._models)),
        })
        self._pending = {}
        messages = []
        for i in (int(c) for c in sampled if int(c) not in decision.excluded):
            k = int(decision.assignment[i])
            node = self._node_of[i]
            self._pending[node] = k
            cfg = ConfigRecord({**dict(config), "server-round": server_round, "cluster": k})
            messages.append(Message(
                RecordDict({self.arrayrecord_key: to_record(self._models[k], self._keys),
                            self.configrecord_key: cfg}),
                dst_node_id=node, message_type=MessageType.TRAIN,
            ))
        return messages

    def _apply(self, mixing: np.ndarray | None) -> None:
        if mixing is not None:
            self._models = mix_models(self._models, mixing)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Per-cluster FedAvg (weights: ``num-examples``), in client-id order."""
        valid, _ = self._check_and_log_replies(replies, is_train=True)
        per_cluster: dict[int, list[tuple[int, Params, float]]] = {}
        for msg in valid:
            k = self._pending[msg.metadata.src_node_id]
            meta = next(iter(msg.content.metric_records.values()))
            params = from_record(next(iter(msg.content.array_records.values())))
            per_cluster.setdefault(k, []).append(
                (_int(meta["client-id"]), params, _float(meta[self.weighted_by_key]))
            )
        for k, items in per_cluster.items():
            items.sort(key=lambda item: item[0])
            self._models[k] = weighted_average([p for _, p, _ in items], [w for *_, w in items])
        metrics = MetricRecord({"num-clusters": len(self._models),
                                "trained-clusters": len(per_cluster)})
        return pack_clusters(self._models, self._keys), metrics

    # --- evaluation -----------------------------------------------------------------------
    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Every node evaluates the model of its cluster on its current test data."""
        if self.fraction_evaluate == 0.0:
            return []
        serve = self.policy.assignment
        messages = []
        for client, node in sorted(self._node_of.items()):
            cfg = ConfigRecord({**dict(config), "server-round": server_round})
            messages.append(Message(
                RecordDict({self.arrayrecord_key: to_record(self._models[int(serve[client])],
                                                          self._keys),
                            self.configrecord_key: cfg}),
                dst_node_id=node, message_type=MessageType.EVALUATE,
            ))
        return messages

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Unweighted mean accuracy over benign clients (what the simulator reports)."""
        valid, _ = self._check_and_log_replies(replies, is_train=False, validate=False)
        rows = sorted(
            (_int(m["client-id"]), _float(m["accuracy"]), _int(m["benign"]))
            for m in (next(iter(msg.content.metric_records.values())) for msg in valid)
        )
        accs = [acc for _, acc, benign in rows if benign]
        if not accs:
            return None
        accuracy = float(np.mean(accs))
        if self.history:
            self.history[-1]["accuracy"] = accuracy
        return MetricRecord({"accuracy": accuracy, "num-clients": len(accs)})
