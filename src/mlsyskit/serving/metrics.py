"""Latency metrics per request and their summary (mean, P50, P99), plus the latency-load plot."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mlsyskit.errors import BenchmarkError
from mlsyskit.serving.request import Request


@dataclass(frozen=True)
class RequestMetrics:
    """Times (seconds, on the engine's clock) and sizes of one finished request."""

    request_id: str
    arrival_s: float
    first_token_s: float
    finish_s: float
    num_prompt_tokens: int
    num_output_tokens: int

    @property
    def ttft_s(self) -> float:
        """Time to first token."""
        return self.first_token_s - self.arrival_s

    @property
    def latency_s(self) -> float:
        """End-to-end latency."""
        return self.finish_s - self.arrival_s

    @property
    def tpot_s(self) -> float:
        """Time per output token after the first (0 for one-token outputs)."""
        n = self.num_output_tokens - 1
        return (self.finish_s - self.first_token_s) / n if n > 0 else 0.0

    @property
    def normalized_latency_s(self) -> float:
        """Latency per output token (the vLLM paper's normalised latency)."""
        return self.latency_s / max(1, self.num_output_tokens)


def request_metrics(request: Request) -> RequestMetrics:
    """Metrics of a finished request (raises if it never produced a token)."""
    if request.first_token_time is None or request.finish_time is None:
        raise BenchmarkError(f"request {request.request_id} did not finish with a token")
    return RequestMetrics(
        request.request_id,
        request.arrival_time,
        request.first_token_time,
        request.finish_time,
        request.num_prompt_tokens,
        request.num_output_tokens,
    )


@dataclass(frozen=True)
class Stat:
    mean: float
    p50: float
    p99: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        arr = np.asarray(values, dtype=float)
        return cls(float(arr.mean()), float(np.percentile(arr, 50)), float(np.percentile(arr, 99)))


@dataclass(frozen=True)
class Summary:
    """Aggregate results of one run."""

    num_requests: int
    duration_s: float
    requests_per_s: float
    output_tokens_per_s: float
    ttft_s: Stat
    tpot_s: Stat
    latency_s: Stat
    normalized_latency_s: Stat

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def summarize(metrics: Sequence[RequestMetrics]) -> Summary:
    """Throughput over the span from the first arrival to the last finish, and latency stats."""
    if not metrics:
        raise BenchmarkError("no finished requests to summarise")
    start = min(m.arrival_s for m in metrics)
    end = max(m.finish_s for m in metrics)
    span = max(end - start, 1e-12)
    return Summary(
        num_requests=len(metrics),
        duration_s=span,
        requests_per_s=len(metrics) / span,
        output_tokens_per_s=sum(m.num_output_tokens for m in metrics) / span,
        ttft_s=Stat.of([m.ttft_s for m in metrics]),
        tpot_s=Stat.of([m.tpot_s for m in metrics]),
        latency_s=Stat.of([m.latency_s for m in metrics]),
        normalized_latency_s=Stat.of([m.normalized_latency_s for m in metrics]),
    )


def write_metrics_json(
    path: Path, summary: Summary, metrics: Sequence[RequestMetrics], **extra: object
) -> None:
    """Summary, per-request rows and ``extra`` fields as one JSON file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        {**asdict(m), "ttft_s": m.ttft_s, "tpot_s": m.tpot_s, "latency_s": m.latency_s}
        for m in metrics
    ]
    path.write_text(json.dumps({**extra, "summary": summary.to_dict(), "requests": rows}, indent=1))


def plot_latency_vs_load(
    series: Mapping[str, Sequence[tuple[float, Summary]]], path: Path, *, title: str = ""
) -> Path:
    """Mean normalised latency and P99 TTFT against request rate, one line per series."""
    from mlsyskit.report.plotting import new_figure, save_figure

    fig = new_figure(9.0, 3.6)
    ax1, ax2 = fig.subplots(1, 2)
    for label, points in series.items():
        rates = [r for r, _ in points]
        ax1.plot(rates, [s.normalized_latency_s.mean for _, s in points], marker="o", label=label)
        ax2.plot(rates, [s.ttft_s.p99 for _, s in points], marker="o", label=label)
    ax1.set_xlabel("request rate (req/s)")
    ax1.set_ylabel("mean normalised latency (s/token)")
    ax2.set_xlabel("request rate (req/s)")
    ax2.set_ylabel("P99 TTFT (s)")
    ax1.legend()
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
