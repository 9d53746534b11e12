"""Registry of the systems mlsyskit builds: names, one-line descriptions, entry points.

Entry points are ``"module:function"`` strings, imported only when used, so ``mlsyskit --help``
does not import torch. ``None`` means not built yet, and everything that lists systems says so.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlsyskit.errors import NotImplementedSystemError, UnknownNameError
from mlsyskit.results import BenchResult, DemoResult


@dataclass(frozen=True)
class SystemInfo:
    """One system: where it lives and how to run its benchmark and demo."""

    name: str
    title: str
    area: str
    summary: str
    paper_headline: str
    reproduce_entry: str | None = None
    demo_entry: str | None = None

    @property
    def implemented(self) -> bool:
        return self.reproduce_entry is not None or self.demo_entry is not None

    def reproduce_fn(self) -> Callable[[bool, Path], BenchResult]:
        return _load(self, self.reproduce_entry, "reproduce")  # type: ignore[return-value]

    def demo_fn(self) -> Callable[[Path], DemoResult]:
        return _load(self, self.demo_entry, "demo")  # type: ignore[return-value]


def _load(info: SystemInfo, entry: str | None, verb: str) -> Callable[..., object]:
    if entry is None:
        raise NotImplementedSystemError(f"{info.name}: '{verb}' is not implemented yet")
    module_name, _, attr = entry.partition(":")
    module = importlib.import_module(module_name)
    fn = getattr(module, attr)
    assert callable(fn)
    return fn


SYSTEMS: tuple[SystemInfo, ...] = (
    SystemInfo(
        name="serving",
        title="Serving engine",
        area="serving",
        summary="One LLM inference engine (paged KV, continuous batching, real and simulated "
        "executors, OpenAI-style server) that NEO, LAMPS and TRAIL run on.",
        paper_headline="vLLM-style engine; >= 2x HF generate throughput; calibrated simulator",
        reproduce_entry="mlsyskit.serving.bench:reproduce",
        demo_entry="mlsyskit.serving.demo:demo",
    ),
    SystemInfo(
        name="neo",
        title="NEO",
        area="serving",
        summary="Offloads decode attention and KV cache to the host CPU with asymmetric "
        "two-sub-batch pipelining and a load-aware scheduler.",
        paper_headline="up to 7.5x (T4), +26% (A10G), +14% (H100) throughput at equal latency",
        reproduce_entry="mlsyskit.serving.neo.bench:reproduce",
        demo_entry="mlsyskit.serving.neo.demo:demo",
    ),
    SystemInfo(
        name="lamps",
        title="LAMPS",
        area="serving",
        summary="Schedules augmented-LLM requests (with API calls) by predicted memory x time "
        "and picks preserve / discard / swap per call.",
        paper_headline="E2E latency -27..85%, TTFT -4..96% vs INFERCEPT",
    ),
    SystemInfo(
        name="trail",
        title="TRAIL",
        area="serving",
        summary="Predicts remaining output length from the model's own embeddings and runs SRPT "
        "with limited preemption.",
        paper_headline="mean latency 1.66-2.01x lower, TTFT 1.76-24.07x lower vs vLLM",
    ),
    SystemInfo(
        name="minder",
        title="Minder",
        area="training",
        summary="Detects the faulty machine of a distributed training job from monitoring "
        "metrics (per-metric LSTM-VAE denoising, peer similarity, continuity).",
        paper_headline="F1 0.893 on 150 production faults; 3.6 s per detection pass",
        reproduce_entry="mlsyskit.training.minder.bench:reproduce",
        demo_entry="mlsyskit.training.minder.demo:demo",
    ),
    SystemInfo(
        name="trainmover",
        title="TrainMover",
        area="training",
        summary="Replaces a machine of a running training job live (communicator member "
        "replacement, sandboxed lazy init).",
        paper_headline="15-16x less downtime than save-and-restart for planned moves",
        reproduce_entry="mlsyskit.training.trainmover.bench:reproduce",
        demo_entry="mlsyskit.training.trainmover.demo:demo",
    ),
    SystemInfo(
        name="optimus",
        title="Optimus",
        area="training",
        summary="Schedules multimodal encoder work inside the LLM's pipeline bubbles.",
        paper_headline="1.21x over Megatron-LM at 3,072 GPUs (ViT-22B + GPT-175B)",
        reproduce_entry="mlsyskit.training.optimus.bench:reproduce",
        demo_entry="mlsyskit.training.optimus.demo:demo",
    ),
    SystemInfo(
        name="fielding",
        title="Fielding",
        area="federated",
        summary="Clustered federated learning that re-clusters selectively on data drift, "
        "as a Flower strategy.",
        paper_headline="+1.9 to 5.9 accuracy points; 1.16-2.61x faster to target accuracy",
        reproduce_entry="mlsyskit.federated.fielding.bench:reproduce",
        demo_entry="mlsyskit.federated.fielding.demo:demo",
    ),
    SystemInfo(
        name="netflowgen",
        title="NetFlowGen",
        area="network",
        summary="A model pre-trained on NetFlow records and fine-tuned for DDoS detection with "
        "few labels.",
        paper_headline="DDoS detection with few labels after pre-training on unlabelled flows",
    ),
    SystemInfo(
        name="cora",
        title="Cora",
        area="network",
        summary="A compiler and runtime that partitions stateful network functions between "
        "SmartNIC and host CPU.",
        paper_headline="saves up to 94% of host CPU cores at the same throughput target",
    ),
)


def system_names() -> list[str]:
    return [s.name for s in SYSTEMS]


def get_system(name: str) -> SystemInfo:
    """Look a system up by name; an unknown name lists the known ones."""
    for info in SYSTEMS:
        if info.name == name:
            return info
    raise UnknownNameError("system", name, system_names())
