"""Prometheus metrics of the server, in the exposition format at ``GET /metrics``.

Engine-side numbers (queue lengths, KV usage, cumulative token counts) are read from the
engine thread's latest ``EngineStats`` when Prometheus scrapes, by a custom collector, so they
are exactly the engine's own counters. Server-side numbers (requests by endpoint and finish
reason, time to first token, end-to-end latency) are recorded by the handlers. Each app gets
its own ``CollectorRegistry``, so several servers (or tests) in one process do not collide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mlsyskit.serving.engine import EngineStats

_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class EngineStatsCollector(Collector):
    """Exposes an ``EngineStats`` snapshot as gauges and counters labelled with the model."""

    def __init__(self, stats: Callable[[], EngineStats], model: str) -> None:
        self._stats = stats
        self._model = model

    def collect(self) -> Iterator[Metric]:
        s = self._stats()
        gauges = {
            "mlsyskit_num_requests_waiting": ("Requests waiting to be scheduled.", s.num_waiting),
            "mlsyskit_num_requests_running": ("Requests holding device KV blocks.", s.num_running),
            "mlsyskit_num_requests_swapped": ("Requests whose KV is in the host pool.",
                                              s.num_swapped),
            "mlsyskit_num_requests_paused": ("Requests paused for an API call.", s.num_paused),
            "mlsyskit_kv_device_usage_ratio": ("Fraction of device KV blocks in use.",
                                               s.device_kv_usage),
            "mlsyskit_kv_device_blocks_used": ("Device KV blocks in use.", s.device_blocks_used),
            "mlsyskit_kv_device_blocks_total": ("Device KV blocks.", s.device_blocks_total),
            "mlsyskit_kv_host_blocks_used": ("Host KV blocks in use.", s.host_blocks_used),
            "mlsyskit_kv_host_blocks_total": ("Host KV blocks.", s.host_blocks_total),
        }
        for name, (doc, value) in gauges.items():
            gauge = GaugeMetricFamily(name, doc, labels=["model"])
            gauge.add_metric([self._model], float(value))
            yield gauge
        counters = {
            "mlsyskit_engine_steps": ("Engine iterations run.", s.num_steps),
            "mlsyskit_prompt_tokens": ("Prompt tokens admitted.", s.num_prompt_tokens),
            "mlsyskit_computed_tokens": ("Tokens run through the model (prefill + decode).",
                                         s.num_computed_tokens),
            "mlsyskit_generation_tokens": ("Output tokens generated.", s.num_generated_tokens),
            "mlsyskit_preemptions": ("Preemptions (swap or recompute).", s.num_preemptions),
            "mlsyskit_swap_outs": ("Requests swapped out to the host pool.", s.num_swap_outs),
            "mlsyskit_engine_requests_finished": ("Requests the engine finished.",
                                                  s.num_finished),
        }
        for name, (doc, value) in counters.items():
            counter = CounterMetricFamily(name, doc, labels=["model"])
            counter.add_metric([self._model], float(value))
            yield counter


class ServerMetrics:
    """The server's registry: engine stats plus per-request counters and latency histograms."""

    def __init__(self, stats: Callable[[], EngineStats], model: str) -> None:
        self.model = model
        self.registry = CollectorRegistry()
        self.registry.register(EngineStatsCollector(stats, model))
        self.requests = Counter(
            "mlsyskit_http_requests", "Generation requests received, by endpoint.",
            ["model", "endpoint"], registry=self.registry,
        )
        self.rejected = Counter(
            "mlsyskit_http_requests_rejected", "Requests answered with HTTP 4xx, by endpoint.",
            ["endpoint"], registry=self.registry,
        )
        self.finished = Counter(
            "mlsyskit_requests_finished", "Generation requests finished, by finish reason.",
            ["model", "finish_reason"], registry=self.registry,
        )
        self.ttft = Histogram(
            "mlsyskit_time_to_first_token_seconds", "Time from arrival to the first token.",
            ["model"], buckets=_LATENCY_BUCKETS_S, registry=self.registry,
        )
        self.e2e = Histogram(
            "mlsyskit_e2e_request_latency_seconds", "Time from arrival to the last token.",
            ["model"], buckets=_LATENCY_BUCKETS_S, registry=self.registry,
        )
