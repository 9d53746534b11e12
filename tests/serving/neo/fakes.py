"""A hand-computable cost model and scheduler factory for NEO tests (no model, no torch)."""

from __future__ import annotations

from mlsyskit.serving.neo.block_manager import NeoBlockManager
from mlsyskit.serving.neo.scheduler import NeoConfig, NeoScheduler, OffloadMode
from mlsyskit.serving.plan import StepPlan, StepResult
from mlsyskit.serving.policy import FCFSPolicy
from mlsyskit.serving.scheduler import SchedulerConfig


class FakeCosts:
    """linr = 1 s for any non-empty batch, prefill 0.5 s, device decode free, host 0.1 s/req."""

    num_layers = 1
    lnch_s = 0.0

    def linr(self, num_tokens: int) -> float:
        return 1.0 if num_tokens > 0 else 0.0

    def pref(self, prompt_len: int) -> float:
        return 0.5 if prompt_len > 0 else 0.0

    def gdec(self, num_context_tokens: int) -> float:
        return 0.0

    def cdec(self, num_requests: int, num_context_tokens: int) -> float:
        return 0.1 * num_requests

    def step_extra(self, num_seqs: int) -> float:
        return 0.0

    def link(self, num_kv_tokens: int) -> float:
        return 0.0


def create_neo_scheduler(
    *,
    num_device_blocks: int = 8,
    num_host_blocks: int = 256,
    block_size: int = 4,
    max_num_seqs: int = 64,
    max_num_batched_tokens: int = 256,
    offload: OffloadMode = OffloadMode.NEO,
    backlog_guard: bool = True,
    neo: NeoConfig | None = None,
    watermark: float = 0.0,
    num_layers: int = 1,
) -> NeoScheduler:
    """A scheduler over :class:`FakeCosts` (``num_layers`` layers of it); ``neo`` overrides
    ``offload``/``backlog_guard``."""
    config = SchedulerConfig(max_num_seqs=max_num_seqs,
                             max_num_batched_tokens=max_num_batched_tokens,
                             enable_chunked_prefill=False, watermark=watermark)
    bm = NeoBlockManager(num_device_blocks, num_host_blocks, block_size)
    if neo is None:
        neo = NeoConfig(offload=offload, backlog_guard=backlog_guard)
    costs = FakeCosts()
    costs.num_layers = num_layers
    return NeoScheduler(config, bm, FCFSPolicy(), costs, neo)


def fake_result(plan: StepPlan) -> StepResult:
    return StepResult(plan.step_id, [7] * len(plan.requests), 0.01)
