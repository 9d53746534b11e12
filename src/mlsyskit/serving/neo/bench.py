"""``mlsyskit reproduce neo``: parity on the real executor, paper setups on the simulator.

Metrics (the issue's definitions):

* ``pipelined_logits_max_abs_diff``: real executor, NEO pipelined (host attention on a host
  thread) vs the device-only engine, max |logit difference| over every sampled token;
* ``t4_throughput_gain``: sustainable rate of NEO / device-only (a *ratio*), T4 + Llama-2-7B,
  summarisation-like requests;
* ``a10g_gain_smallest_cpu`` / ``a10g_gain_largest_cpu``: the paper's Fig. 10a, which is an
  *offline* throughput figure: NEO under the paper's rules (:meth:`NeoConfig.paper`) /
  device-only - 1 (a *fraction*), A10G + Llama-3-8B, g5.2xlarge / g5.16xlarge host, synthetic
  input 1000, steady-state throughput over the middle 40% of a long run (the paper's script
  drops the first and last 30%), the maximum over the output lengths run (the paper's "up
  to"). The same hosts at a latency bound are reported beside them
  (``a10g_latency_gain_*``, no target);
* ``h100_throughput_gain``: the same fraction, Llama-3.1-70B on 2x H100 (TP=2), synthetic
  input 1000 with the longest output (the workload of the A10G runs);
* ``min_gain_vs_device_only``: min over every simulated setup, workload and measure (rate at
  the latency bound, steady offline throughput) of NEO / device-only;
* ``gain_vs_fastdecode``: NEO rate / FastDecode+ rate, A10G + g5.16xlarge (FastDecode+'s most
  favourable host), longest output.

A sustainable rate is where the P90 per-token latency crosses 2x the device-only system's P90
at its lightest sweep point (:mod:`mlsyskit.serving.neo.loadtest`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from mlsyskit.errors import BenchmarkError
from mlsyskit.results import BenchResult
from mlsyskit.serving.neo.costcheck import real_cost_check, sim_prediction_errors
from mlsyskit.serving.neo.engine import SETUPS
from mlsyskit.serving.neo.loadtest import (
    RECOMPUTE,
    VLLM_256,
    VLLM_512,
    Comparison,
    LatencyStat,
    SpecMaker,
    SteadyThroughput,
    System,
    as_system,
    compare,
    steady_offline_throughput,
    sustainable_rate,
)
from mlsyskit.serving.neo.scheduler import NeoConfig, OffloadMode
from mlsyskit.serving.neo.workloads import OSC_OUTPUT, OSC_PROMPT, NeoWorkload, neo_workload
from mlsyskit.serving.workload import RequestSpec

A10G_SIZES = ("2", "4", "8", "16")
#: NEO under the paper's exact rules (the Fig. 10a runs)
PAPER_NEO = System(OffloadMode.NEO, "neo-paper", neo=NeoConfig.paper())
T4_REQUESTS = 300


@dataclass(frozen=True)
class BenchSize:
    num_requests: int
    fractions: tuple[float, ...]
    output_lens: tuple[int, ...]
    #: requests of one offline (Fig. 10a) run: enough that the pools fill long before the
    #: first 30% of the run is over on every host
    offline_requests: int
    offline_output_lens: tuple[int, ...]


QUICK = BenchSize(120, (0.3, 0.6, 0.85, 1.0, 1.2), (400,), 3000, (100, 400))
FULL = BenchSize(300, (0.3, 0.55, 0.75, 0.9, 1.0, 1.2), (100, 200, 400), 6000,
                 (50, 100, 200, 300, 400))
#: a window whose halves differ by more than this is not a steady state: its gain is left out
#: of the targeted metrics and named in the notes
MAX_STEADY_DRIFT = 0.05
#: the device-only engines a steady offline NEO run is compared with (the first is the
#: paper's GPU-only baseline, the targets' reference)
OFFLINE_BASELINES = (System(OffloadMode.NONE), VLLM_256, VLLM_512)


@dataclass(frozen=True)
class OfflineCase:
    """Steady offline runs of NEO (paper's rules) and the device-only engines on one case."""

    neo: SteadyThroughput
    baselines: dict[str, SteadyThroughput]

    @property
    def steady(self) -> bool:
        return max(r.drift for r in (self.neo, *self.baselines.values())) <= MAX_STEADY_DRIFT

    def gain(self, baseline: str = "none") -> float:
        """NEO's rate / ``baseline``'s - 1."""
        base = self.baselines[baseline].rate_rps
        if base <= 0:
            raise BenchmarkError(f"{baseline}: no request finished inside the window; "
                                 "use more offline requests")
        return self.neo.rate_rps / base - 1

    def gain_vs_best(self) -> float:
        """NEO's rate over the fastest device-only engine's - 1."""
        return min(self.gain(k) for k in self.baselines)


#: the fixed-ratio ablation at other host shares than the default 0.5 (spec §5.7, NEO item 5)
FIXED_SHARES = tuple(
    System(OffloadMode.FIXED_RATIO, f"fixed-{x:g}",
           neo=NeoConfig(offload=OffloadMode.FIXED_RATIO, host_fraction=x))
    for x in (0.25, 0.75, 0.9)
)


def _maker(kind: NeoWorkload, output_len: int = 200) -> SpecMaker:
    def make(n: int, rate: float, seed: int) -> list[RequestSpec]:
        return neo_workload(kind, n, rate, output_len=output_len, seed=seed)

    return make


def plot_curves(comparisons: Sequence[Comparison], path: Path, title: str) -> Path:
    """P90 per-token latency vs request rate, one panel per comparison (the paper's Fig. 6)."""
    from mlsyskit.report.plotting import new_figure, save_figure

    fig = new_figure(4.0 * len(comparisons), 3.4)
    axes = fig.subplots(1, len(comparisons), squeeze=False)[0]
    labels = {"none": "device-only", "neo": "NEO", "fastdecode": "FastDecode+",
              "fixed-ratio": "fixed ratio 0.5",
              "vllm-256": "vLLM-256", "vllm-512": "vLLM-512", "recompute": "device-only recompute"}
    for ax, comp in zip(axes, comparisons, strict=True):
        for name, points in comp.curves.items():
            pts = sorted(points, key=lambda p: p.rate)
            ax.plot([p.rate for p in pts], [p.p90_token_latency_s * 1e3 for p in pts],
                    marker="o", label=f"{labels.get(name, name)} ({comp.rates[name]:.2f} req/s)")
        ax.axhline(comp.bound_s * 1e3, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xlabel("request rate (req/s)")
        ax.set_ylabel("P90 per-token latency (ms)")
        ax.set_title(f"{comp.setup} / {comp.workload}", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_cpu_gains(
    gains: dict[str, dict[int, float]], offline: dict[str, dict[int, float]], path: Path
) -> Path:
    """Gain over device-only vs host size, per output length (the paper's Fig. 10a).

    Left: sustainable rate at the P90 bound (default rules); right: steady offline throughput
    of NEO under the paper's exact rules (:meth:`NeoConfig.paper`), what Fig. 10a plots and
    what ``a10g_gain_*`` report.
    """
    from mlsyskit.report.plotting import new_figure, save_figure

    fig = new_figure(10.0, 3.4)
    panels = fig.subplots(1, 2)
    for ax, data, title in ((panels[0], gains, "rate at 2x P90 bound (default rules)"),
                            (panels[1], offline, "steady offline, paper's rules (metric)")):
        sizes = list(data)
        outs = sorted({o for g in data.values() for o in g})
        width = 0.8 / max(1, len(outs))
        for k, out in enumerate(outs):
            ax.bar([i + k * width for i in range(len(sizes))],
                   [100 * data[s].get(out, 0.0) for s in sizes], width, label=f"output {out}")
        ax.set_xticks([i + width * (len(outs) - 1) / 2 for i in range(len(sizes))])
        ax.set_xticklabels([f"g5.{s}xl" for s in sizes])
        ax.set_ylabel("NEO gain over device-only (%)")
        ax.axhline(0, color="black", linewidth=0.6)
        values = [100 * g for per in data.values() for g in per.values()] or [0.0]
        # at least +-5% of range, so a gain of 0.1% does not fill the panel
        ax.set_ylim(min(-5.0, 1.2 * min(values)), max(5.0, 1.15 * max(values)))
        ax.legend(fontsize=7)
        ax.set_title(title, fontsize=9)
    fig.suptitle("A10G + Llama-3-8B, input 1000 (simulated)")
    return save_figure(fig, path)


def headroom_note(cases: Sequence[tuple[str, int]]) -> str:
    """Best pipelined decode step vs device-only with a full device, per (setup, context).

    Pure cost-model arithmetic (:func:`~mlsyskit.serving.neo.plan.pipelining_headroom`): the
    device holds as many ``ctx``-token decodes as its pool allows and the host queue is long.
    """
    from mlsyskit.serving.neo.plan import pipelining_headroom

    parts = []
    for name, ctx in cases:
        setup = SETUPS[name]
        dev_blocks, _ = setup.pools()
        n_dev = min(dev_blocks * setup.block_size // ctx, setup.max_num_seqs)
        h = pipelining_headroom(setup.costs(), n_dev, ctx)
        parts.append(f"{name} ctx {ctx}: {n_dev} device + {h.num_host} host decodes, "
                     f"throughput x{h.throughput_gain:.2f} for iteration x"
                     f"{h.iteration_growth:.2f}")
    return ("pipelining headroom (roofline, best decode-only pipelined step with a full "
            "device and a long host queue, vs the device-only step): " + "; ".join(parts))


def reproduce(quick: bool, out_dir: Path) -> BenchResult:
    """Run NEO's benchmarks (see the module docstring)."""
    from mlsyskit.serving.neo.real import pipelined_parity

    size = QUICK if quick else FULL
    console = Console(stderr=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    res = BenchResult()
    n, fr = size.num_requests, size.fractions

    console.print("[neo] real executor: pipelined vs sequential parity")
    parity = pipelined_parity()
    res.metrics["pipelined_logits_max_abs_diff"] = parity.max_abs_logit_diff
    res.notes.append(
        f"parity: 'small' model (4 layers, random weights), 8 greedy requests x 12 tokens; "
        f"NEO ran {parity.num_pipelined_steps} pipelined steps with {parity.num_host_decodes} "
        f"host decodes; {parity.num_tokens_compared} tokens compared, same greedy tokens: "
        f"{parity.same_tokens}; host thread busy {parity.host_busy_s:.2f} s of "
        f"{parity.pipelined_forward_s:.2f} s pipelined forward (overlap is real, on 2 shared cores)"
    )

    console.print("[neo] real executor: measured tables vs measured step times")
    tables, checks = real_cost_check(seed=0)
    for chk in checks:
        key = "sequential" if chk.label == "device-only" else "pipelined"
        res.metrics[f"real_step_time_err_{key}"] = chk.median_rel_err
    sim_check = sim_prediction_errors(
        "t4-7b", neo_workload(NeoWorkload.SUMMARIZATION, 300, 2.0, seed=0))
    res.metrics["sim_step_time_err"] = sim_check.p90_rel_err
    res.notes.append(
        "cost-model check (spec ablation: predicted vs actual step time): per-layer tables "
        f"measured on the real executor ({tables.source}; hand-off lnch "
        f"{1e3 * tables.lnch_s:.3f} ms per layer, step extras "
        f"{1e3 * tables.extra_fixed_s:.3f} ms + {1e3 * tables.extra_per_seq_s:.3f} ms per "
        "sequence), then the same 12 requests served for real with one intra-op thread (the "
        "host thread has the other core); predicted = step_time(plan, measured tables): "
        + "; ".join(
            f"{c.label}: {c.num_steps} steps ({c.num_pipelined} pipelined), median |err| "
            f"{c.median_rel_err:.2f}, P90 {c.p90_rel_err:.2f}, sum predicted / sum measured "
            f"{c.total_ratio:.2f}"
            + ("" if c.decode_pipelined_ratio is None else
               f", decode-only pipelined steps took {c.decode_pipelined_ratio:.2f}x their "
               "prediction (median)")
            for c in checks)
        + "; real_step_time_err_* are those medians (wall-clock on a shared 2-core VM: they "
        "move from run to run). sim_step_time_err: P90 |predicted - charged| / charged of "
        f"NEO's steps on t4-7b (summarisation, 2 req/s, {sim_check.num_steps} steps): the "
        "scheduler's interpolated tables vs the roofline the simulator charges "
        f"(median {sim_check.median_rel_err:.4f}, sum ratio {sim_check.total_ratio:.4f})"
    )

    def run(setup: str, kind: NeoWorkload, out: int = 0,
            systems: tuple[OffloadMode | System, ...] = (OffloadMode.NONE, OffloadMode.NEO),
            num_requests: int = n) -> Comparison:
        label = kind.value if kind is not NeoWorkload.SYNTHETIC else f"synthetic out {out}"
        console.print(f"[neo] {setup}: {label} "
                      f"({', '.join(as_system(s).name for s in systems)})")
        return compare(SETUPS[setup], _maker(kind, out), workload=label, systems=systems,
                       num_requests=num_requests, fractions=fr)

    all_ratios: list[tuple[str, float]] = []
    offline: list[str] = []

    looser: list[str] = []
    steady: list[str] = []

    def note_offline(comp: Comparison) -> None:
        caps = comp.capacities
        offline.append(f"{comp.setup}/{comp.workload} "
                       + " ".join(f"{k} {v:.3g}" for k, v in caps.items()))
        # the same curves read at a 4x bound (sweeps stop after the 2x crossing, so a rate
        # may be a lower bound there)
        loose = {k: sustainable_rate(v, 2.0 * comp.bound_s) for k, v in comp.curves.items()}
        looser.append(f"{comp.setup}/{comp.workload} {loose['neo'] / loose['none']:.2f}")
        # the paper's own statistic: mean per-token latency over the steady middle of the run
        # (first 10% and last 30% by arrival dropped), bound 2x device-only's lightest point
        stat = LatencyStat.STEADY_MEAN
        sbound = 2.0 * stat.of(min(comp.curves["none"], key=lambda p: p.rate))
        srate = {k: sustainable_rate(v, sbound, stat) for k, v in comp.curves.items()}
        steady.append(f"{comp.setup}/{comp.workload} {srate['neo'] / srate['none']:.2f}")
    # the T4 runs are cheap (short requests): always 300 per point, as in the full run
    t4 = run("t4-7b", NeoWorkload.SUMMARIZATION,
             systems=(OffloadMode.NONE, OffloadMode.NEO, OffloadMode.FASTDECODE,
                      OffloadMode.FIXED_RATIO, *FIXED_SHARES, VLLM_256, VLLM_512, RECOMPUTE),
             num_requests=max(n, T4_REQUESTS))
    res.metrics["t4_throughput_gain"] = t4.gain()
    best_vllm = max((VLLM_256.name, VLLM_512.name), key=lambda k: t4.rates[k])
    res.metrics["t4_gain_vs_vllm_chunked"] = t4.gain("neo", best_vllm)
    res.metrics["t4_gain_vs_recompute"] = t4.gain("neo", RECOMPUTE.name)
    res.metrics["t4_gain_vs_fixed_ratio"] = t4.gain("neo", OffloadMode.FIXED_RATIO.value)
    shares = {0.5: t4.rates[OffloadMode.FIXED_RATIO.value],
              **{x.neo.host_fraction: t4.rates[x.name] for x in FIXED_SHARES if x.neo}}
    best_share = max(shares, key=lambda k: shares[k])
    res.metrics["t4_gain_vs_best_fixed_ratio"] = t4.rates["neo"] / shares[best_share]
    res.notes.append(
        "fixed-ratio sweep on T4 (sustainable req/s by host share): "
        + ", ".join(f"{k:g}: {v:.3g}" for k, v in sorted(shares.items()))
        + f"; NEO {t4.rates['neo']:.3g}; t4_gain_vs_best_fixed_ratio = NEO / the best share "
        f"({best_share:g}), chosen after the fact, which no fixed split could know in advance"
    )
    note_offline(t4)
    all_ratios.append(("t4-7b/summarization", t4.gain()))

    gains: dict[str, dict[int, float]] = {}
    a10g_curves: dict[str, Comparison] = {}
    steady_runs: dict[tuple[str, int], OfflineCase] = {}

    def steady_case(setup: str, out: int) -> OfflineCase:
        """Steady offline runs of NEO (paper's rules) and every device-only engine."""
        console.print(f"[neo] {setup}: offline synthetic out {out} "
                      f"({size.offline_requests} requests)")
        make = _maker(NeoWorkload.SYNTHETIC, out)
        case = OfflineCase(
            steady_offline_throughput(SETUPS[setup], PAPER_NEO, make, size.offline_requests),
            {b.name: steady_offline_throughput(SETUPS[setup], b, make, size.offline_requests)
             for b in OFFLINE_BASELINES})
        steady_runs[(setup, out)] = case
        all_ratios.append((f"{setup}/offline out{out}", 1 + case.gain()))
        return case

    def best_steady(setup: str, metric: str, of: Callable[[OfflineCase], float]) -> None:
        """``metric`` = the max of ``of`` over the steady cases of ``setup`` (none: left out)."""
        steady = [of(c) for (name, _), c in steady_runs.items() if name == setup and c.steady]
        if steady:
            res.metrics[metric] = max(steady)
        else:
            res.notes.append(f"{metric}: left out, no offline run on {setup} reached a steady "
                             "state (use more offline requests)")
    for s in A10G_SIZES:
        gains[s] = {}
        for out in size.output_lens:
            systems: tuple[OffloadMode | System, ...] = (OffloadMode.NONE, OffloadMode.NEO)
            last = s == A10G_SIZES[-1] and out == size.output_lens[-1]
            if last:
                systems = (*systems, OffloadMode.FASTDECODE)
            comp = run(f"a10g-8b-{s}", NeoWorkload.SYNTHETIC, out, systems)
            gains[s][out] = comp.gain() - 1
            all_ratios.append((f"a10g-8b-{s}/out{out}", comp.gain()))
            a10g_curves[s] = comp
            note_offline(comp)
            if last:
                res.metrics["gain_vs_fastdecode"] = comp.gain("neo", "fastdecode")
        # the paper's Fig. 10a: steady offline throughput under the paper's own rules
        for out in size.offline_output_lens:
            steady_case(f"a10g-8b-{s}", out)
    for s, which in ((A10G_SIZES[0], "smallest"), (A10G_SIZES[-1], "largest")):
        best_steady(f"a10g-8b-{s}", f"a10g_gain_{which}_cpu", OfflineCase.gain)
        best_steady(f"a10g-8b-{s}", f"a10g_gain_vs_best_device_only_{which}_cpu",
                    OfflineCase.gain_vs_best)
    res.metrics["a10g_latency_gain_smallest_cpu"] = max(gains[A10G_SIZES[0]].values())
    res.metrics["a10g_latency_gain_largest_cpu"] = max(gains[A10G_SIZES[-1]].values())

    code = run("a10g-8b-16", NeoWorkload.CODE,
               systems=(OffloadMode.NONE, OffloadMode.NEO, OffloadMode.FIXED_RATIO))
    all_ratios.append(("a10g-8b-16/code", code.gain()))
    res.metrics["code_gain_vs_fixed_ratio"] = code.gain("neo", OffloadMode.FIXED_RATIO.value)
    note_offline(code)
    h100 = run("h100x2-70b", NeoWorkload.SYNTHETIC, size.output_lens[-1])
    res.metrics["h100_throughput_gain"] = h100.gain() - 1
    note_offline(h100)
    all_ratios.append((f"h100x2-70b/out{size.output_lens[-1]}", h100.gain()))
    for out in size.offline_output_lens:
        steady_case("h100x2-70b", out)
    best_steady("h100x2-70b", "h100_offline_gain", OfflineCase.gain)
    worst = min(all_ratios, key=lambda kv: kv[1])
    res.metrics["min_gain_vs_device_only"] = worst[1]

    plot_curves([t4, a10g_curves[A10G_SIZES[0]], a10g_curves[A10G_SIZES[-1]], h100],
                out_dir / "neo_load_latency.png", "NEO vs device-only (simulated)")
    plot_curves([code], out_dir / "neo_code_workload.png", "code-like workload (simulated)")
    offline_gains = {s: {o: c.gain() for (name, o), c in steady_runs.items()
                         if name == f"a10g-8b-{s}"} for s in A10G_SIZES}
    plot_cpu_gains(gains, offline_gains, out_dir / "neo_cpu_size.png")
    res.plots = ["neo_load_latency.png", "neo_cpu_size.png", "neo_code_workload.png"]

    res.paper = {
        "pipelined_logits_max_abs_diff": "same outputs (exact offload)",
        "t4_throughput_gain": 7.5,
        "t4_gain_vs_vllm_chunked": "about 5.6 (Fig. 6, vs vLLM)",
        "t4_gain_vs_recompute": "not given",
        "t4_gain_vs_fixed_ratio": "NEO >= a fixed-ratio offload (ablation)",
        "code_gain_vs_fixed_ratio": "NEO >= a fixed-ratio offload (ablation)",
        "t4_gain_vs_best_fixed_ratio": "NEO >= a fixed-ratio offload (ablation)",
        "a10g_gain_smallest_cpu": 0.122,
        "a10g_gain_largest_cpu": 0.793,
        "a10g_gain_vs_best_device_only_smallest_cpu": "not given",
        "a10g_gain_vs_best_device_only_largest_cpu": "not given",
        "a10g_latency_gain_smallest_cpu": "not given (Fig. 6 shows A10G with one host: +6.4%)",
        "a10g_latency_gain_largest_cpu": "not given",
        "h100_throughput_gain": 0.14,
        "h100_offline_gain": "not given",
        "min_gain_vs_device_only": "slightly below 1 at short outputs",
        "gain_vs_fastdecode": "NEO > FastDecode+",
        "real_step_time_err_sequential": "not given (NEO's scheduler overhead < 3 ms/step)",
        "real_step_time_err_pipelined": "not given",
        "sim_step_time_err": "not given",
    }
    res.targets = {
        "pipelined_logits_max_abs_diff": "<= 1e-4",
        "t4_throughput_gain": ">= 4",
        "a10g_gain_smallest_cpu": "in [0, 0.25]",
        "a10g_gain_largest_cpu": "in [0.5, 1.1]",
        "h100_throughput_gain": "in [0.05, 0.25]",
        "min_gain_vs_device_only": ">= 0.97",
        "gain_vs_fastdecode": "> 1",
    }
    measured = {"pipelined_logits_max_abs_diff", "real_step_time_err_sequential",
                "real_step_time_err_pipelined"}
    res.simulated = [k for k in res.metrics if k not in measured]
    per_size = "; ".join(
        f"g5.{s}xlarge " + ", ".join(f"out {o}: {100 * g:+.1f}%" for o, g in gains[s].items())
        for s in A10G_SIZES
    )
    def case_note(c: OfflineCase) -> str:
        b, p = c.baselines["none"], c.neo
        return (f"{100 * c.gain():+.1f}% (device-only {b.rate_rps:.3g} req/s, whole-run TPOT "
                f"{1e3 * b.mean_tpot_s:.0f} ms; NEO {p.rate_rps:.3g} req/s, whole-run TPOT "
                f"{1e3 * p.mean_tpot_s:.0f} ms; vs the best device-only engine "
                f"{100 * c.gain_vs_best():+.1f}% ("
                + ", ".join(f"{k} {v.rate_rps:.3g}" for k, v in c.baselines.items() if k != "none")
                + f"); whole run {100 * (p.whole_run_rps / b.whole_run_rps - 1):+.1f}%)")
    steady_note = "; ".join(f"{name} out {o}: {case_note(c)}"
                            for (name, o), c in steady_runs.items())
    unsteady = [f"{name} out {o} ({max(r.drift for r in (c.neo, *c.baselines.values())):.2f})"
                for (name, o), c in steady_runs.items() if not c.steady]
    res.notes += [
        "definitions: t4_throughput_gain = NEO rate / device-only rate (ratio); "
        "t4_gain_vs_vllm_chunked, t4_gain_vs_recompute: the same ratio against the other "
        "device-only baselines (no target); t4_gain_vs_fixed_ratio, code_gain_vs_fixed_ratio: "
        "NEO rate / the rate of a static split (OffloadMode.FIXED_RATIO: half of the requests "
        "on the host, every host decode every step, always pipelined, no swap-in) on T4 "
        "summarisation and A10G g5.16xlarge code-like requests (no target); "
        "h100_offline_gain = the a10g_gain_* measure on 2x H100 (no target: the paper's "
        "+14% is a same-latency figure, h100_throughput_gain); "
        "a10g_gain_vs_best_device_only_* = the same steady offline NEO against the fastest of "
        "device-only, vLLM-256 and vLLM-512 (no target: the paper's Fig. 10a baseline is "
        "GPU-only without chunking; chunked prefill alone takes part of the gain); "
        "h100_throughput_gain and a10g_latency_gain_* = NEO rate / device-only rate - 1 "
        "(fraction, 0.793 = +79.3%); a10g_gain_* = steady offline throughput of NEO under the "
        "paper's rules / device-only - 1, the paper's Fig. 10a (offline; its script drops the "
        "first and last 30% of the run), with the issue's targets taken from that figure; "
        "a10g_* take the max over the output lengths run; min_gain_vs_device_only = min ratio "
        "over every setup, workload and measure; gain_vs_fastdecode = NEO rate / FastDecode+ "
        "rate on g5.16xlarge with the longest output",
        f"steady offline throughput ({size.offline_requests} requests at t=0 per run, "
        "requests finishing in the middle 40% of the run's span counted; NEO with "
        "NeoConfig.paper(), whose rules maximise throughput and let the host batch grow to "
        "the host pool or max_num_seqs, hence its per-token decode times): " + steady_note,
        "steady-state check (the window's two halves within "
        f"{100 * MAX_STEADY_DRIFT:.0f}% of each other in every run of a case; an unsteady "
        "case is left out of the a10g_gain_* / h100_offline_gain maxima): "
        + ("all cases steady" if not unsteady else "NOT steady: " + ", ".join(unsteady)),
        "rate = sustainable request rate where P90 per-token latency (latency / (prompt + "
        "output)) crosses 2x device-only's P90 at its lightest sweep point; each system is "
        "swept at fractions " + ", ".join(f"{f:g}" for f in fr) + " of its own offline "
        f"capacity with {n} Poisson requests per point (seed 0)",
        f"A10G latency-bound gains per host (a10g_latency_gain_*): {per_size}",
        "ratios per setup: " + ", ".join(f"{k} {v:.3f}" for k, v in all_ratios)
        + f" (worst: {worst[0]})",
        "offline throughput (req/s, all requests at t=0, default rules; not the metric): "
        + "; ".join(offline),
        "sensitivity to the latency bound (not the metric): NEO/device-only rate ratio at "
        "4x instead of 2x the light-load P90, read from the same curves (>= where a sweep "
        "stopped below the bound): " + "; ".join(looser),
        "same curves read with the paper's statistic (not the metric): NEO/device-only rate "
        "ratio where the MEAN per-token latency over the steady middle of each run (first "
        "10% and last 30% of requests by arrival dropped, as the paper's benchmark.py does) "
        "crosses 2x device-only's at its lightest point (sweeps stop at the P90 crossing, so "
        "a ratio may be a bound): " + "; ".join(steady),
        headroom_note([("t4-7b", int(OSC_PROMPT.mean + OSC_OUTPUT.mean / 2))]
                      + [(f"a10g-8b-{s}", 1000 + size.output_lens[-1] // 2) for s in A10G_SIZES]
                      + [("h100x2-70b", 1000 + size.output_lens[-1] // 2)]),
        "T4 sustainable rates (req/s): " + ", ".join(f"{k} {v:.3f}" for k, v in t4.rates.items())
        + "; device-only swaps a preempted request's KV, recompute discards it, vllm-256/512 "
        "are device-only with chunked prefill at 256/512 tokens per step (the paper's vLLM "
        "baselines); t4_gain_vs_vllm_chunked = NEO / the better of the two",
        "simulator: NeoScheduler (the same class the real engine runs) plans with tables "
        "sampled from the roofline on NEO's grids; the executor charges the roofline itself "
        "(pipelined stages cost max(device, host)); host attention speed = min(0.6 x socket "
        "DRAM peak, cores x core FMA peak x 0.25 / (H_q/H_kv) flop per byte): two global "
        "efficiencies, nothing fitted to the paper's gains; every number is a prediction",
        "the 2x H100 host is not named in the paper: assumed 2x Xeon 8480+ (614 GB/s, 112 "
        "cores); host launch overhead 0.2 ms per layer and sub-batch (NEO's code: 0.8 ms)",
        "NEO here adds latency guards to the paper's rules: host-destined prefills only "
        "while the host places its whole queue and only if the next decode-only step would "
        "decode every host request (steady admission); no new prefill takes the device while "
        "host decodes wait to swap in; pipelined only if its predicted throughput gain "
        "exceeds its iteration-time growth (ModeRule.POWER, the paper: throughput only); "
        "NeoConfig.paper() gives the paper's rules exactly",
        f"quick={quick}: " + ("120 requests per point (T4: 300), 5 load points (+ up to 6 "
                              "more until the bound is crossed), A10G output 400 only; "
                              "offline runs of 3000 requests, outputs 100 and 400 (shorter "
                              "than the full run's 6000: the window may not be steady)"
                              if quick else
                              "300 requests per point, 6 load points (+ up to 6 more), A10G "
                              "outputs 100, 200, 400; offline runs of 6000 requests, outputs "
                              "50, 100, 200, 300, 400"),
        f"wall time {time.perf_counter() - started:.0f} s",
    ]
    return res
