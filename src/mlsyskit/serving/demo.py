"""A short end-to-end demo: the real engine under load on this CPU, then the simulator."""

from __future__ import annotations

from pathlib import Path

from mlsyskit.results import DemoResult
from mlsyskit.serving.metrics import Summary, plot_latency_vs_load, summarize


def demo(out_dir: Path) -> DemoResult:
    """Serve a small random-weight model at three rates for real, and sweep load in simulation."""
    from mlsyskit.serving.bench import HF_OUTPUT, HF_PROMPT, latency_vs_load, torch_threads
    from mlsyskit.serving.engine import build_engine
    from mlsyskit.serving.model import get_model_config
    from mlsyskit.serving.runner import random_prompt_ids, run_workload
    from mlsyskit.serving.workload import synthetic_workload

    out_dir.mkdir(parents=True, exist_ok=True)
    real: list[tuple[float, Summary]] = []
    vocab = get_model_config("small").vocab_size
    with torch_threads(1):
        for rate in (2.0, 6.0, 18.0):
            engine = build_engine("small", "fcfs", num_device_blocks=128, max_num_seqs=8,
                                  max_num_batched_tokens=256)
            specs = synthetic_workload(16, rate, prompt=HF_PROMPT, output=HF_OUTPUT, seed=1)
            metrics = run_workload(engine, specs, prompt_ids=random_prompt_ids(vocab, 1))
            real.append((rate, summarize(metrics)))
    real_plot = plot_latency_vs_load({"fcfs (real, this CPU)": real},
                                     out_dir / "serving_real_latency_vs_load.png",
                                     title="model 'small' on this CPU (measured)")
    sim = latency_vs_load([1.0, 2.0, 3.0, 3.5, 4.0], 300)
    sim_plot = plot_latency_vs_load(sim, out_dir / "serving_sim_latency_vs_load.png",
                                    title="Llama-3-8B on A10G (simulated)")
    top_fcfs, top_sjf = sim["fcfs"][-1][1], sim["sjf"][-1][1]
    return DemoResult(
        summary=(
            "The engine served 16 requests at 2, 6 and 18 req/s with a random-weight 'small' "
            "Llama on this CPU (continuous batching over a paged KV cache), then the same "
            "scheduler ran Llama-3-8B on a simulated A10G with FCFS and oracle SJF."
        ),
        metrics={
            "real_mean_ttft_s_at_18_rps": real[-1][1].ttft_s.mean,
            "real_output_tokens_per_s_at_18_rps": real[-1][1].output_tokens_per_s,
            "sim_fcfs_mean_latency_s_at_4_rps": top_fcfs.latency_s.mean,
            "sim_sjf_mean_latency_s_at_4_rps": top_sjf.latency_s.mean,
        },
        plots=[real_plot, sim_plot],
        simulated=["sim_fcfs_mean_latency_s_at_4_rps", "sim_sjf_mean_latency_s_at_4_rps"],
    )
