"""``mlsyskit reproduce fielding``: the issue's benchmarks on Fashion-MNIST, 3 seeds.

Scenario parameters are fixed in :mod:`scenarios` (chosen once, not per seed); see
docs/systems/fielding.md. Accuracy is the mean test accuracy of benign clients on their
*current* data, each with the model it is served; "final" is the mean over the last 10% of
rounds. Times are on the simulated clock (:mod:`clock`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlsyskit.federated.fielding.harness import RunRequest, run_many
from mlsyskit.federated.fielding.policies import StrategyName
from mlsyskit.federated.fielding.representation import Representation
from mlsyskit.federated.fielding.scenarios import ScenarioName, scenario_spec
from mlsyskit.federated.fielding.simulator import RunResult
from mlsyskit.results import BenchResult

S = StrategyName
SCHEDULED_STRATEGIES = (
    S.FIELDING, S.FEDAVG, S.IFCA, S.IFCA_LAST_IDENTITY, S.CLUSTER_ONCE, S.MOVES_ONLY,
    S.GLOBAL_EVERY_DRIFT, S.FEDDRIFT, S.ORACLE,
)
CONCEPT_STRATEGIES = (S.FIELDING, S.IFCA, S.ORACLE)
HETERO_STRATEGIES = (S.FIELDING, S.FEDAVG, S.IFCA)
HETERO_ALPHAS = (5.0, 50.0, 500.0)  # the scheduled scenario uses 50
TIME_TARGET_FRACTION = 0.95
POST_DRIFT_ROUNDS = 10
FIELDING_FEATURES = "fielding+features"
FIELDING_CLASS_FEATURES = "fielding+class-features"
F, E = StrategyName.FIELDING.value, StrategyName.GLOBAL_EVERY_DRIFT.value


@dataclass(frozen=True)
class BenchSize:
    num_clients: int
    num_rounds: int
    clients_per_round: int
    seeds: tuple[int, ...]
    eval_every: int


FULL = BenchSize(100, 200, 20, (0, 1, 2), 2)
QUICK = BenchSize(50, 80, 10, (0,), 2)
# the heterogeneity sweep runs at the quick size (with the full run's seeds): IFCA's
# every-client evaluation of K models dominates the cost of a run
SWEEP = BenchSize(50, 80, 10, (0, 1, 2), 2)


def _req(size: BenchSize, scenario: ScenarioName, strategy: StrategyName, seed: int,
         malicious: float = 0.0,
         representation: Representation = Representation.LABELS,
         alpha: float | None = None) -> RunRequest:
    return RunRequest(
        scenario, strategy, seed, size.num_clients, size.num_rounds, size.clients_per_round,
        malicious, alpha, eval_every=size.eval_every, representation=representation,
    )


def hetero_group(alpha: float) -> str:
    return f"hetero_alpha{alpha:g}"


def drift_rounds(size: BenchSize) -> list[int]:
    """Rounds of the scheduled scenario's drift events (switches and the new group)."""
    spec = scenario_spec(ScenarioName.SCHEDULED, num_rounds=size.num_rounds)
    fractions = [*spec.switch_at, *([spec.emerge_at] if spec.emerge_at is not None else [])]
    return sorted(max(1, int(f * size.num_rounds)) for f in fractions)


def post_drift_accuracy(run: RunResult, events: list[int], window: int) -> float:
    """Mean accuracy over the evaluations in the ``window`` rounds from each drift event on:
    how well clients are served while the population is still reacting."""
    masks = [(run.rounds >= t) & (run.rounds < t + window) for t in events]
    return float(np.mean([run.accuracy[m].mean() for m in masks if m.any()]))


def speedup(fielding: RunResult, other: RunResult) -> float:
    """Simulated time for ``other`` to reach 95% of its own final accuracy, over Fielding's
    time to reach the same accuracy (0 if Fielding never does)."""
    target = TIME_TARGET_FRACTION * other.final_accuracy
    t_other = other.time_to(target)[1]
    t_field = fielding.time_to(target)[1]
    return 0.0 if not np.isfinite(t_field) else t_other / t_field


def reproduce(quick: bool, out_dir: Path) -> BenchResult:
    """Run every scenario/strategy/seed of the benchmark and summarise it."""
    size = QUICK if quick else FULL
    sweep = size if quick else SWEEP
    plan: list[tuple[str, str, int, RunRequest]] = []
    for seed in size.seeds:
        for s in SCHEDULED_STRATEGIES:
            plan.append(("scheduled", s.value, seed, _req(size, ScenarioName.SCHEDULED, s, seed)))
        for s in (S.FIELDING, S.GLOBAL_EVERY_DRIFT):
            plan.append(("continuous", s.value, seed, _req(size, ScenarioName.CONTINUOUS, s, seed)))
        plan.append(("malicious", S.FIELDING.value, seed,
                     _req(size, ScenarioName.SCHEDULED, S.FIELDING, seed, malicious=0.2)))
        for s in (S.FIELDING, S.FEDAVG):
            plan.append(("iid", s.value, seed, _req(size, ScenarioName.IID, s, seed)))
        for s in (S.FIELDING, S.ORACLE):
            plan.append(("feature", s.value, seed, _req(size, ScenarioName.FEATURE, s, seed)))
        plan.append(("feature", FIELDING_FEATURES, seed, _req(
            size, ScenarioName.FEATURE, S.FIELDING, seed,
            representation=Representation.LABELS_AND_FEATURES)))
        for s in CONCEPT_STRATEGIES:
            plan.append(("concept", s.value, seed, _req(size, ScenarioName.CONCEPT, s, seed)))
        plan.append(("concept", FIELDING_CLASS_FEATURES, seed, _req(
            size, ScenarioName.CONCEPT, S.FIELDING, seed,
            representation=Representation.LABELS_AND_CLASS_FEATURES)))
        for alpha in HETERO_ALPHAS:
            for s in HETERO_STRATEGIES:
                plan.append((hetero_group(alpha), s.value, seed,
                             _req(sweep, ScenarioName.SCHEDULED, s, seed, alpha=alpha)))
    results = run_many([p[3] for p in plan], "fielding benchmark")
    runs: dict[tuple[str, str, int], RunResult] = {
        (p[0], p[1], p[2]): r for p, r in zip(plan, results, strict=True)
    }

    def final(group: str, label: str) -> np.ndarray:
        return np.array([runs[(group, label, seed)].final_accuracy for seed in size.seeds])

    fielding = final("scheduled", F)
    metrics: dict[str, float] = {
        "final_acc_gain_vs_fedavg": float((fielding - final("scheduled", S.FEDAVG.value)).mean()),
        "final_acc_gain_vs_ifca": float((fielding - final("scheduled", S.IFCA.value)).mean()),
        "final_acc_gain_vs_cluster_once": float(
            (fielding - final("scheduled", S.CLUSTER_ONCE.value)).mean()
        ),
        "gap_to_oracle": float((final("scheduled", S.ORACLE.value) - fielding).mean()),
    }
    for other in (S.IFCA, S.FEDAVG):
        ups = [speedup(runs[("scheduled", F, s)], runs[("scheduled", other.value, s)])
               for s in size.seeds]
        metrics[f"time_to_target_speedup_vs_{other.value}"] = float(np.mean(ups))
    glob_f = np.mean([runs[("continuous", F, s)].num_global_reclusters
                      for s in size.seeds])
    glob_e = np.mean([runs[("continuous", E, s)].num_global_reclusters
                      for s in size.seeds])
    metrics["global_reclusters_fielding"] = float(glob_f)
    metrics["global_reclusters_every_drift"] = float(glob_e)
    metrics["global_reclusters_ratio"] = float(glob_f / glob_e) if glob_e else float("nan")
    metrics["continuous_acc_gain_vs_every_drift"] = float(
        (final("continuous", F) - final("continuous", E)).mean()
    )
    drops = []
    for seed in size.seeds:  # paired: the same benign clients, with and without liars
        clean = runs[("scheduled", F, seed)].final_client_accuracy()
        attacked = runs[("malicious", F, seed)].final_client_accuracy()
        benign = ~np.isnan(attacked)
        drops.append(float(clean[benign].mean() - attacked[benign].mean()))
    metrics["malicious_acc_drop"] = float(np.mean(drops))
    metrics["malicious_global_reclusters_fielding"] = float(np.mean(
        [runs[("malicious", F, s)].num_global_reclusters for s in size.seeds]))
    metrics["iid_gap_vs_fedavg"] = float(
        np.abs(final("iid", F) - final("iid", S.FEDAVG.value)).mean()
    )
    metrics["iid_num_clusters_fielding"] = float(np.mean(
        [runs[("iid", F, s)].num_clusters[-1] for s in size.seeds]))
    metrics["final_acc_fielding_scheduled"] = float(fielding.mean())
    with_features = final("feature", FIELDING_FEATURES)
    metrics["feature_drift_gain_of_feature_stats"] = float(
        (with_features - final("feature", F)).mean())
    metrics["feature_drift_gap_to_oracle"] = float(
        (final("feature", S.ORACLE.value) - with_features).mean())
    metrics.update(_extra_metrics(runs, size, final))

    plots = _plots(runs, size, out_dir)
    _write_table(runs, size, out_dir)
    notes = [
        f"{'quick' if quick else 'full'}: {size.num_clients} clients, {size.num_rounds} rounds, "
        f"{size.clients_per_round} sampled per round, seeds {list(size.seeds)}, evaluation every "
        f"{size.eval_every} rounds; Fashion-MNIST (Debian dataset-fashion-mnist), MLP 784-64-10 "
        "in PyTorch, 1 local epoch, batch 32, lr 0.05; deterministic in-process simulator.",
        "scheduled: 4 label groups (0.9 mass on 3 classes), client mix ~ Dirichlet(50*proto); "
        "30% of clients switch group at 25% and 75% of the rounds, 20% join a new 5th group at "
        "50%. continuous: every client switches with prob 2%/round, new group at 50%.",
        "final accuracy = mean over the last 10% of rounds of benign clients' test accuracy "
        "on their current data; gains are Fielding minus baseline, averaged over seeds.",
        f"time to target: target = {TIME_TARGET_FRACTION} x the baseline's own final accuracy, "
        "first evaluation where the mean of the last 5 evaluations reaches it, on the simulated "
        "clock "
        "(2 GFLOP/s clients, lognormal(0,0.5) speed, 10/5 Mbit/s links, 50 ms latency; IFCA "
        "downloads and evaluates all 5 cluster models).",
        "malicious: 20% of clients send a fresh random Dirichlet(1) histogram every round; "
        "accuracy over benign clients; quarantine after >3 reports in 20 rounds.",
        "iid: every client's labels uniform; iid_num_clusters_fielding is the K Fielding chose.",
        "global_reclusters_ratio and continuous_acc_gain_vs_every_drift encode the issue's "
        "'Fielding <= 5% of the other, with accuracy at least as high'.",
        "feature: 30% of clients see their images rotated by 90 degrees at 50% of the rounds "
        "(labels unchanged). feature_drift_gain_of_feature_stats = Fielding reporting "
        "label histogram + 4x4 pooled mean image minus Fielding with labels only; "
        "feature_drift_gap_to_oracle uses the extended vector.",
        "ifca is evaluated best-of-K: every client (sampled or not) picks its lowest-loss model "
        "on its local training data at each evaluation, as IFCA's reference code evaluates "
        "(there on test data); ifca_last_identity trains identically but serves each client the "
        "cluster it picked when it last trained (identities are estimated only at sampled "
        "clients), the reading under which Fielding's paper contrasts 'all drifted clients' "
        "with 'only sampled ones'. Both have K = 5 = the number of label groups after the new "
        "group appears (notes, section 6), random initialisation, the same local training.",
        f"post_drift_acc_gain_vs_*: Fielding minus baseline of the mean accuracy over the "
        f"{POST_DRIFT_ROUNDS} rounds from each scheduled drift event on (switches and new group).",
        "concept: 30% of clients get two dominant labels of their group swapped at 50% of the "
        "rounds (P(y|x) changes, P(y) barely). fielding uses label histograms only; "
        "fielding+class-features reports per class P(y=c) x 4x4 pooled mean image of class c; "
        "the oracle has 8 models (4 groups x swapped or not).",
        f"hetero_alpha*: the scheduled scenario with client label mixes ~ Dirichlet(alpha * "
        f"prototype) for alpha in {list(HETERO_ALPHAS)} (the main runs use 50), at "
        f"{sweep.num_clients} clients, {sweep.num_rounds} rounds, {sweep.clients_per_round} per "
        f"round, seeds {list(sweep.seeds)}; gains are Fielding minus FedAvg / IFCA final "
        "accuracy.",
        "per-strategy tables of every scenario: fielding_table.json next to this file.",
    ]
    return BenchResult(
        metrics=metrics,
        paper={
            "final_acc_gain_vs_fedavg": "+0.019..0.059 over the best baseline",
            "final_acc_gain_vs_ifca": "+0.019..0.059 over the best baseline",
            "final_acc_gain_vs_cluster_once": "+0.019..0.059 over the best baseline",
            "time_to_target_speedup_vs_ifca": "1.16-2.61x",
            "time_to_target_speedup_vs_fedavg": "1.16-2.61x",
        },
        targets={
            "final_acc_gain_vs_fedavg": ">= 0.05",
            "final_acc_gain_vs_ifca": ">= 0.02",
            "final_acc_gain_vs_cluster_once": ">= 0.05",
            "gap_to_oracle": "<= 0.01",
            "time_to_target_speedup_vs_ifca": ">= 1.16",
            "time_to_target_speedup_vs_fedavg": ">= 1.16",
            "global_reclusters_ratio": "<= 0.05",
            "continuous_acc_gain_vs_every_drift": ">= 0.0",
            "malicious_acc_drop": "<= 0.01",
            "iid_gap_vs_fedavg": "<= 0.005",
        },
        simulated=["time_to_target_speedup_vs_ifca", "time_to_target_speedup_vs_fedavg"],
        notes=notes,
        plots=plots,
    )


def _extra_metrics(
    runs: dict[tuple[str, str, int], RunResult], size: BenchSize,
    final: Callable[[str, str], np.ndarray],
) -> dict[str, float]:
    """IFCA's serving rule, the accuracy right after drifts, concept drift and the
    heterogeneity sweep (reported, no targets)."""
    fielding = final("scheduled", F)
    last_id = S.IFCA_LAST_IDENTITY.value
    out = {
        "final_acc_gain_vs_ifca_last_identity": float(
            (fielding - final("scheduled", last_id)).mean()),
    }
    events = drift_rounds(size)
    for other in (S.IFCA.value, last_id):
        gains = [
            post_drift_accuracy(runs[("scheduled", F, s)], events, POST_DRIFT_ROUNDS)
            - post_drift_accuracy(runs[("scheduled", other, s)], events, POST_DRIFT_ROUNDS)
            for s in size.seeds
        ]
        out[f"post_drift_acc_gain_vs_{other}"] = float(np.mean(gains))
    concept_cf = final("concept", FIELDING_CLASS_FEATURES)
    out["concept_acc_gain_vs_ifca"] = float(
        (final("concept", F) - final("concept", S.IFCA.value)).mean())
    out["concept_gain_of_class_features"] = float((concept_cf - final("concept", F)).mean())
    out["concept_class_features_gain_vs_ifca"] = float(
        (concept_cf - final("concept", S.IFCA.value)).mean())
    out["concept_gap_to_oracle"] = float((final("concept", S.ORACLE.value) - concept_cf).mean())
    for alpha in HETERO_ALPHAS:
        group = hetero_group(alpha)
        mine = final(group, F)
        out[f"{group}_gain_vs_fedavg"] = float((mine - final(group, S.FEDAVG.value)).mean())
        out[f"{group}_gain_vs_ifca"] = float((mine - final(group, S.IFCA.value)).mean())
    return out


def _mean_curve(rs: list[RunResult]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (rs[0].rounds, np.mean([r.accuracy for r in rs], 0), np.mean([r.time_s for r in rs], 0))


def _plots(runs: dict[tuple[str, str, int], RunResult], size: BenchSize,
           out_dir: Path) -> list[str]:
    from mlsyskit.report.plotting import new_figure, save_figure

    written = []
    for group in ("scheduled", "continuous", "feature", "concept"):
        strategies = sorted({k[1] for k in runs if k[0] == group})
        fig = new_figure(11.0, 4.2)
        ax_r, ax_t = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
        for s in strategies:
            rounds, acc, time_s = _mean_curve([runs[(group, s, seed)] for seed in size.seeds])
            style = "-" if s.startswith(F) else "--"
            ax_r.plot(rounds, acc, style, label=s, lw=2 if style == "-" else 1)
            ax_t.plot(time_s, acc, style, label=s, lw=2 if style == "-" else 1)
        ax_r.set_xlabel("round")
        ax_t.set_xlabel("simulated time (s)")
        for ax in (ax_r, ax_t):
            ax.set_ylabel("benign test accuracy")
            ax.set_ylim(0.4, 1.0)
            ax.grid(alpha=0.3)
        ax_r.set_title(f"{group} drift, Fashion-MNIST ({len(size.seeds)} seeds)")
        ax_t.legend(fontsize=7, loc="lower right")
        name = f"fielding_{group}.png"
        save_figure(fig, out_dir / name)
        written.append(name)
    return written


def _write_table(runs: dict[tuple[str, str, int], RunResult], size: BenchSize,
                 out_dir: Path) -> None:
    table: dict[str, dict[str, dict[str, float]]] = {}
    for (group, s, _), _r in runs.items():
        rs = [runs[(group, s, seed)] for seed in size.seeds]
        table.setdefault(group, {})[s] = {
            "final_accuracy": float(np.mean([r.final_accuracy for r in rs])),
            "final_accuracy_std": float(np.std([r.final_accuracy for r in rs])),
            "global_reclusters": float(np.mean([r.num_global_reclusters for r in rs])),
            "moves": float(np.mean([r.num_moves for r in rs])),
            "simulated_time_s": float(np.mean([r.time_s[-1] for r in rs])),
        }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "fielding_table.json").write_text(json.dumps(table, indent=2) + "\n")
