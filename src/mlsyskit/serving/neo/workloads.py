"""The paper's workloads, generated from published statistics (no download).

* summarisation-like (OSC): prompts ~372 tokens (max 589), outputs ~45 (max 129);
* NEO's synthetic: input and output uniform in ±10% around (1000, ``output_len``);
* code-like (Azure code trace shape): long prompts (~2000), short outputs (~28).
"""

from __future__ import annotations

import enum

from mlsyskit.serving.workload import (
    LengthDistribution,
    LengthKind,
    RequestSpec,
    synthetic_workload,
)


class NeoWorkload(enum.Enum):
    SUMMARIZATION = "summarization"
    SYNTHETIC = "synthetic"
    CODE = "code"


OSC_PROMPT = LengthDistribution(LengthKind.LOGNORMAL, mean=372, low=16, high=589, sigma=0.19)
OSC_OUTPUT = LengthDistribution(LengthKind.LOGNORMAL, mean=45, low=4, high=129, sigma=0.33)
CODE_PROMPT = LengthDistribution(LengthKind.LOGNORMAL, mean=2048, low=64, high=7000, sigma=0.6)
CODE_OUTPUT = LengthDistribution(LengthKind.LOGNORMAL, mean=28, low=2, high=256, sigma=0.8)


def neo_workload(
    kind: NeoWorkload | str,
    num_requests: int,
    rate: float,
    *,
    output_len: int = 200,
    input_len: int = 1000,
    seed: int = 0,
) -> list[RequestSpec]:
    """Seeded Poisson arrivals at ``rate`` req/s (``inf``: all at 0) with ``kind``'s lengths."""
    k = NeoWorkload(kind) if isinstance(kind, str) else kind
    if k is NeoWorkload.SUMMARIZATION:
        prompt, output = OSC_PROMPT, OSC_OUTPUT
    elif k is NeoWorkload.CODE:
        prompt, output = CODE_PROMPT, CODE_OUTPUT
    else:
        prompt = LengthDistribution(LengthKind.UNIFORM, low=int(0.9 * input_len),
                                    high=int(1.1 * input_len))
        output = LengthDistribution(LengthKind.UNIFORM, low=max(1, int(0.9 * output_len)),
                                    high=max(1, int(1.1 * output_len)))
    return synthetic_workload(num_requests, rate, prompt=prompt, output=output, seed=seed)
