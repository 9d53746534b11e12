"""The paper's published figures, used only for comparison and for fitting baseline constants.

Source: Feng et al., "Optimus: Accelerating Large-Scale Multi-Modal LLM Training by Bubble
Exploitation", USENIX ATC 2025 (https://www.usenix.org/system/files/atc25-feng.pdf):
Table 5 (strong scaling, ViT-22B + GPT-175B, global batch 1536), Table 7 (scheduler
efficiency and runtime), Table 1 (bubble breakdown of a production job).

Only the *baseline* iteration times (Megatron-LM and Megatron-LM balanced) may be used to
fit the global constants of the cost model; Optimus's own rows are never read by the
simulator or the scheduler.
"""

from __future__ import annotations

# GPUs -> (Megatron-LM s, Megatron-LM balanced s, Optimus s); Table 5.
STRONG_SCALING_S: dict[int, tuple[float, float, float]] = {
    1536: (10.65, 10.43, 9.80),
    2048: (8.26, 8.06, 7.29),
    3072: (5.91, 5.87, 4.87),
}
# GPUs -> microbatches per LLM pipeline (global batch 1536 / (DP x microbatch size 2)).
MICROBATCHES: dict[int, int] = {1536: 32, 2048: 24, 3072: 16}
# microbatches -> (Eff_coarse, Eff_fine, scheduler runtime s); Table 7.
SCHEDULER_TABLE: dict[int, tuple[float, float, float]] = {
    32: (0.343, 0.575, 322.2),
    24: (0.458, 0.693, 89.6),
    16: (0.687, 0.850, 15.1),
}
# Table 1: share of a 5.12 s production step per bubble type.
BUBBLE_SHARE: dict[str, float] = {
    "DP all-gather": 0.033, "DP reduce-scatter": 0.089, "PP warm-up": 0.050,
    "PP cool-down": 0.092, "PP other": 0.087, "TP": 0.112,
}
FLOP_PER_ITERATION = 5.12e18  # PF/s x iteration time in every Table 5 row
