"""Real execution at small scale: tiny ViT + GPT on 2 gloo processes (one thread each).

The two worker processes first measure the run's costs in situ (kernel islands, gloo P2P
lag, late returns of emulated waits; see :mod:`cpu_profile`); the parent feeds them to the
*same* planner and bubble scheduler as the simulation, replay-checks the resulting
Megatron-LM (encoder on stage 0) and Optimus schedules and predicts their iteration times;
only then do the workers execute both schedules kernel by kernel, time them, and compare
their gradients with a single-process serial reference.
"""

from __future__ import annotations

import os
import socket
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlsyskit.hardware import get_catalogue
from mlsyskit.training.optimus.config import JobConfig, ModelPart, ParallelPlan
from mlsyskit.training.optimus.errors import OptimusError
from mlsyskit.training.optimus.models import get_model
from mlsyskit.training.optimus.schedule import Schedule

if TYPE_CHECKING:
    from mlsyskit.training.optimus.cpu_profile import KernelKey, RunProfile


@dataclass(frozen=True)
class CpuRunConfig:
    """Sizes of the real run (defaults take a few seconds per iteration on 2 cores)."""

    num_microbatches: int = 4
    microbatch_size: int = 2
    seq_len: int = 128
    iterations: int = 5
    warmup: int = 1
    tp_comm_s: float = 1.5e-3
    dp_ag_s: float = 8e-3
    dp_rs_s: float = 12e-3
    seed: int = 0
    timeout_s: float = 300.0
    # in-situ measurement before planning (see cpu_profile): stage passes per rank, P2P
    # probes, and re-executions drawn from the samples for the prediction
    nominal_p2p_s: float = 0.3e-3  # P2P guess of the isolated-profile prediction only
    profile_reps: int = 6
    p2p_rounds: int = 14
    prediction_draws: int = 40

    def __post_init__(self) -> None:
        # the P2P probe drops its first two rounds (connection set-up) as warm-up
        least = {"num_microbatches": 1, "microbatch_size": 1, "seq_len": 1, "iterations": 1,
                 "profile_reps": 1, "p2p_rounds": 3, "prediction_draws": 1}
        for name, low in least.items():
            if getattr(self, name) < low:
                raise OptimusError(f"CpuRunConfig.{name} must be >= {low}; "
                                   f"got {getattr(self, name)}")
        for name in ("warmup", "tp_comm_s", "dp_ag_s", "dp_rs_s", "nominal_p2p_s"):
            if getattr(self, name) < 0:
                raise OptimusError(f"CpuRunConfig.{name} must be >= 0; got {getattr(self, name)}")
        if self.timeout_s <= 0:
            raise OptimusError(f"CpuRunConfig.timeout_s must be > 0; got {self.timeout_s}")


@dataclass
class CpuRunResult:
    """Measured and simulated iteration times of both schedules, plus correctness checks."""

    measured_s: dict[str, float]
    # Predicted before the run: the task graph re-executed with kernel times drawn from the
    # in-situ samples (median over draws); planned_s is the scheduler's own estimate at the
    # mean kernel times.
    simulated_s: dict[str, float]
    max_grad_err: dict[str, float]
    grads_match: dict[str, bool]
    replay_violations: int
    encoder_plan: str
    partition: tuple[int, ...]
    schedules: dict[str, Schedule]
    measured: dict[str, Schedule] = field(default_factory=dict)
    planned_s: dict[str, float] = field(default_factory=dict)
    # Plan and estimate from the parent's isolated one-layer profile (medians) and a
    # nominal P2P lag: what the prediction was before the in-situ measurement.
    isolated_s: dict[str, float] = field(default_factory=dict)
    p2p_lag_s: float = 0.0
    kernel_inflation: float = 1.0  # in-situ mean / isolated median, summed over islands

    @property
    def speedup(self) -> float:
        return self.measured_s["megatron"] / self.measured_s["optimus"]

    @property
    def sim_rel_err(self) -> float:
        """Prediction error of the simulator fed with the isolated (parent) kernel profile."""
        return max(abs(self.simulated_s[k] / self.measured_s[k] - 1) for k in self.measured_s)

    @property
    def kernel_drift(self) -> float:
        """Compute time of the last timed iteration over its planned (pre-run mean) time.

        Why: on a shared machine the load can change between the in-situ measurement and the
        timed run; 1.0 means the prediction's kernel times held during the run.
        """
        from mlsyskit.training.optimus.schedule import Resource

        ran = planned = 0.0
        for key, m in self.measured.items():
            plan = self.schedules[key].tasks
            for t in m.tasks:
                if t.resource is Resource.COMPUTE:
                    ran += t.duration_s
                    planned += plan[t.tid].duration_s
        return ran / planned

    @property
    def isolated_rel_err(self) -> float:
        """Prediction error had the simulator used the isolated (parent) kernel profile."""
        return max(abs(self.isolated_s[k] / self.measured_s[k] - 1) for k in self.measured_s)


def cpu_job(cfg: CpuRunConfig) -> JobConfig:
    cat = get_catalogue()
    plan = ParallelPlan(dp=1, pp=2, tp=1, virtual_stages=1,
                        num_microbatches=cfg.num_microbatches,
                        microbatch_size=cfg.microbatch_size)
    return JobConfig(
        "cpu-tiny", cat.get("h100-sxm"), 2, 2, cat.get("nvlink4"), cat.get("ib-ndr"),  # type: ignore[arg-type]
        (ModelPart(get_model("vit-tiny"), cfg.seq_len),), ModelPart(get_model("gpt-tiny"),
                                                                    cfg.seq_len),
        plan, recompute=False,
    )


def plan_schedules(cfg: CpuRunConfig, prof: RunProfile
                   ) -> tuple[dict[str, Schedule], str, tuple[int, ...], int]:
    """Build and replay-check both schedules from the in-situ profile (in this process)."""
    from mlsyskit.training.optimus import baselines
    from mlsyskit.training.optimus.build import baseline_schedule, optimus_schedule
    from mlsyskit.training.optimus.costmodel import CostModel
    from mlsyskit.training.optimus.cpu_model import EmulatedComm, profiled_cost_model
    from mlsyskit.training.optimus.planner import EncoderPlan
    from mlsyskit.training.optimus.replay import replay
    from mlsyskit.training.optimus.search import search

    job = cpu_job(cfg)
    comm = EmulatedComm(cfg.tp_comm_s, cfg.dp_ag_s, cfg.dp_rs_s, prof.p2p_mean_s)
    cm = profiled_cost_model(CostModel.for_job(job), prof.kernel_means(), comm)
    mega = baselines.megatron(job, cm)
    enc_plan = EncoderPlan(dp=2, pp=1, tp=1, pp_llm=2, tp_llm=1)
    best = search(job, cm, plans=[enc_plan], fine_top_k=None).best
    schedules = {
        "megatron": baseline_schedule("Megatron-LM (encoder on stage 0)", mega.timeline,
                                      mega.dp.ag_s, mega.dp.rs_s, mega.iteration_s),
        "optimus": optimus_schedule("Optimus", best.ctx, best.fine, best.fine_eval),
    }
    violations = sum(len(replay(s).violations) for s in schedules.values())
    return schedules, enc_plan.label(), best.parts, violations


def isolated_profile(cfg: CpuRunConfig) -> dict[KernelKey, float]:
    """The parent's one-layer profile (medians), kept to show what in-situ changes."""
    import torch

    from mlsyskit.training.optimus.cpu_model import profile_layer

    torch.set_num_threads(1)
    job = cpu_job(cfg)
    out: dict[KernelKey, float] = {}
    for part in (job.encoders[0], job.llm):
        prof = profile_layer(part.spec, cfg.microbatch_size, cfg.seq_len, seed=cfg.seed)
        out.update({(part.spec.name, d, n): v for (d, n), v in prof.items()})
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cpu(cfg: CpuRunConfig | None = None) -> CpuRunResult:
    """Measure in situ, plan and predict, then execute both schedules on 2 gloo processes.

    The workers first measure kernel and P2P costs (both ranks at once), the parent plans
    both schedules from those numbers and predicts their iteration times, and only then
    sends the schedules to the workers, which run and time them.

    Raises
    ------
    OptimusError
        A worker failed or timed out (workers are always stopped).
    """
    import torch.multiprocessing as mp

    from mlsyskit.training.optimus.cpu_profile import RunProfile, merge, sampled_makespan

    cfg = cfg or CpuRunConfig()
    isolated = isolated_profile(cfg)
    iso_prof = RunProfile({k: (v,) for k, v in isolated.items()}, (cfg.nominal_p2p_s,))
    iso_schedules = plan_schedules(cfg, iso_prof)[0]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    inboxes = [ctx.Queue() for _ in range(2)]
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, port, cfg, inboxes[r], queue), daemon=True)
             for r in range(2)]
    results: dict[int, dict[str, Any]] = {}
    started: list[Any] = []
    sent = False
    try:
        for proc in procs:
            proc.start()
            started.append(proc)
        profiles = _collect(queue, len(procs), cfg.timeout_s)
        prof = merge([profiles[r] for r in sorted(profiles)])
        schedules, plan_label, parts, violations = plan_schedules(cfg, prof)
        planned = {k: s.makespan_s for k, s in schedules.items()}
        simulated = {k: sampled_makespan(s, prof, cfg.prediction_draws, cfg.seed)
                     for k, s in schedules.items()}
        for box in inboxes:
            box.put(schedules)
        sent = True
        results = _collect(queue, len(procs), cfg.timeout_s)
    except Exception as exc:
        if isinstance(exc, OptimusError):
            raise
        raise OptimusError(f"cpu run failed: {type(exc).__name__}: {exc}") from exc
    finally:
        if not sent:
            for box in inboxes:
                box.put(None)
        for proc in started:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
    measured = {k: statistics.median(results[0]["times"][k]) for k in schedules}
    errs = {k: max(results[r]["grad_err"][k] for r in results) for k in schedules}
    match = {k: all(results[r]["grads_ok"][k] for r in results) for k in schedules}
    timelines = {k: _measured_schedule(schedules[k], results) for k in schedules}
    isolated_s = {k: s.makespan_s for k, s in iso_schedules.items()}
    means = prof.kernel_means()
    both = [(spec, d, n) for spec, d, n in isolated if (d, n) in means.get(spec, {})]
    inflation = (sum(means[spec][(d, n)] for spec, d, n in both)
                 / sum(isolated[k] for k in both))
    return CpuRunResult(measured, simulated, errs, match, violations, plan_label, parts,
                        schedules, timelines, planned, isolated_s, prof.p2p_mean_s, inflation)


def _collect(queue: Any, n: int, timeout_s: float) -> dict[int, Any]:
    """One message per worker; a worker's error string becomes an OptimusError."""
    got: dict[int, Any] = {}
    errors = []
    for _ in range(n):
        rank, payload = queue.get(timeout=timeout_s)
        if isinstance(payload, str):
            errors.append(f"rank {rank}: {payload}")
        else:
            got[rank] = payload
    if errors:
        raise OptimusError("cpu run failed: " + "; ".join(sorted(errors)))
    return got


def _measured_schedule(s: Schedule, results: dict[int, dict[str, Any]]) -> Schedule:
    import dataclasses

    name = next(k for k in ("megatron", "optimus") if k in s.name.lower() or
                (k == "megatron" and "Megatron" in s.name))
    tasks = []
    for r in results:
        for tid, start, end in results[r]["record"][name]:
            t = s.tasks[tid]
            tasks.append(dataclasses.replace(t, start_s=start, end_s=end))
    tasks.sort(key=lambda t: t.tid)
    span = max(t.end_s for t in tasks)
    return dataclasses.replace(s, name=f"{s.name} (measured)", tasks=tuple(tasks), deps=(),
                               makespan_s=span)


def _worker(rank: int, port: int, cfg: CpuRunConfig, inbox: Any, queue: Any) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    try:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=2)
        try:
            from mlsyskit.training.optimus.cpu_profile import measure_in_situ

            job = cpu_job(cfg)
            queue.put((rank, measure_in_situ(
                rank, job.encoders[0].spec, job.llm.spec, cfg.microbatch_size, cfg.seq_len,
                cfg.profile_reps, cfg.p2p_rounds, cfg.seed, cfg.tp_comm_s)))
            schedules = inbox.get(timeout=cfg.timeout_s)
            if schedules is not None:  # None: the parent gave up after the profile
                queue.put((rank, _worker_body(rank, cfg, schedules)))
        finally:
            dist.destroy_process_group()
    except Exception as exc:  # reported to the parent, which raises
        import traceback

        tb = traceback.format_exc(limit=4).replace("\n", " | ")
        queue.put((rank, f"{type(exc).__name__}: {exc} [{tb}]"))


def _worker_body(rank: int, cfg: CpuRunConfig, schedules: dict[str, Schedule]
                 ) -> dict[str, Any]:
    import time

    import torch
    import torch.distributed as dist

    from mlsyskit.training.optimus.costmodel import Direction
    from mlsyskit.training.optimus.cpu_exec import Interpreter, Program, exec_list, llm_mapping
    from mlsyskit.training.optimus.cpu_model import IslandLayer

    job = cpu_job(cfg)
    enc_spec, llm_spec = job.encoders[0].spec, job.llm.spec

    def build() -> tuple[list[IslandLayer], list[IslandLayer]]:
        torch.manual_seed(cfg.seed)
        enc = [IslandLayer(enc_spec) for _ in range(enc_spec.num_layers)]
        llm = [IslandLayer(llm_spec) for _ in range(llm_spec.num_layers)]
        return enc, llm

    n = cfg.num_microbatches
    images, targets = [], []
    for i in range(n):
        rng = torch.Generator().manual_seed(1000 + i)
        shape = (cfg.microbatch_size, cfg.seq_len, llm_spec.hidden)
        images.append(torch.randn(*shape, generator=rng))
        targets.append(torch.randn(*shape, generator=rng))
    # serial reference
    ref_enc, ref_llm = build()
    loss = torch.zeros(())
    for i in range(n):
        x = images[i]
        for layer in (*ref_enc, *ref_llm):
            x = layer(x)
        loss = loss + torch.nn.functional.mse_loss(x, targets[i]) / n
    loss.backward()
    ref_grads = [[p.grad.clone() for p in layer.parameters()]  # type: ignore[union-attr]
                 for layer in (*ref_enc, *ref_llm)]
    half = llm_spec.num_layers // 2
    out: dict[str, Any] = {"times": {}, "grad_err": {}, "grads_ok": {}, "record": {}}
    for key, s in schedules.items():
        enc, llm = build()
        stage_llm = {0: llm[:half], 1: llm[half:]}
        if key == "megatron":
            stages = {0: [(e, False) for e in enc] + [(m, True) for m in stage_llm[0]],
                      1: [(m, True) for m in stage_llm[1]]}
            enc_device: dict[int, int] = {}
            mapping: dict[tuple[int, int], int] = {}
        else:
            stages = {v: [(m, True) for m in stage_llm[v]] for v in (0, 1)}
            enc_device = {0: 0, 1: 1}
            mapping = llm_mapping(s)
        prog = Program(
            s, {v: exec_list(stages[v], Direction.FWD) for v in stages},
            {v: exec_list(stages[v], Direction.BWD) for v in stages},
            exec_list([(e, False) for e in enc], Direction.FWD),
            exec_list([(e, False) for e in enc], Direction.BWD),
            enc_device, mapping, 2,
        )
        times = []
        record: list[tuple[int, float, float]] = []
        for it in range(cfg.warmup + cfg.iterations):
            for layer in (*enc, *llm):
                layer.zero_grad(set_to_none=True)
            dist.barrier()
            t0 = time.perf_counter()
            rec, end = Interpreter(prog, rank, images, targets).run()
            span = torch.tensor([end - t0], dtype=torch.float64)
            dist.all_reduce(span, op=dist.ReduceOp.MAX)
            if it >= cfg.warmup:
                times.append(float(span.item()))
                record = [(t.tid, a - t0, b - t0) for t, a, b in rec]
        # encoder replicas: sum their gradients (the DP reduce the schedule emulates)
        for layer in enc:
            for p in layer.parameters():
                summed = p.grad if p.grad is not None else torch.zeros_like(p)
                dist.all_reduce(summed)
                p.grad = summed
        owned = list(range(enc_spec.num_layers)) + [
            enc_spec.num_layers + i for i in range(llm_spec.num_layers)
            if (i < half) == (rank == 0)
        ]
        layers = (*enc, *llm)
        err, ok = 0.0, True
        for idx in owned:
            for p, ref in zip(layers[idx].parameters(), ref_grads[idx], strict=True):
                got = p.grad if p.grad is not None else torch.zeros_like(p)
                err = max(err, float((got - ref).abs().max()))
                ok = ok and torch.allclose(got, ref, rtol=1e-4, atol=1e-6)
        out["times"][key], out["grad_err"][key], out["grads_ok"][key] = times, err, ok
        out["record"][key] = record
    return out
