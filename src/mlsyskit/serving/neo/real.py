"""NEO on the real executor: engines and the pipelined-vs-sequential parity check."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from mlsyskit.errors import ConfigError
from mlsyskit.serving.clock import WallClock
from mlsyskit.serving.engine import Engine
from mlsyskit.serving.neo.cost import CostTables, LayerCosts, roofline_costs
from mlsyskit.serving.neo.engine import NeoEngine
from mlsyskit.serving.neo.scheduler import NeoConfig, OffloadMode
from mlsyskit.serving.neo.torch_executor import NeoTorchExecutor, RecordingTorchExecutor
from mlsyskit.serving.policy import FCFSPolicy, KVAction
from mlsyskit.serving.runner import random_prompt_ids, run_workload
from mlsyskit.serving.scheduler import SchedulerConfig
from mlsyskit.serving.workload import RequestSpec


def planning_tables(costs: LayerCosts | None = None) -> CostTables:
    """Tables the real NEO engine plans with by default: the T4 + Llama-2-7B roofline.

    On this CPU-only machine a measured profile would say "never offload" (host and "device"
    are the same cores), so the real engine plans as if it were the paper's T4 setup; its
    *results* are unaffected (that is what the parity check shows), only the placement.
    """
    return CostTables.sample(costs or roofline_costs("llama-2-7b", "t4", "g4dn-4xlarge"),
                             max_tokens=4096, source="roofline t4 + llama-2-7b")


def build_torch_engine(
    model: str = "small",
    offload: OffloadMode | str = OffloadMode.NEO,
    *,
    num_device_blocks: int = 16,
    num_host_blocks: int = 512,
    block_size: int = 16,
    max_num_seqs: int = 64,
    max_num_batched_tokens: int = 1024,
    tables: CostTables | None = None,
    seed: int = 0,
    record_logits: bool = False,
    neo: NeoConfig | None = None,
) -> Engine:
    """A real engine on this CPU: NEO, FastDecode+ or device-only (``none``).

    Both pools live in CPU memory but are separate :class:`PagedKVCache` objects; requests
    placed on the host decode with attention on the host thread. ``neo`` overrides NEO's rules
    (its ``offload`` is replaced by ``offload``).
    """
    mode = OffloadMode(offload) if isinstance(offload, str) else offload
    if mode is OffloadMode.NONE and (neo is not None or tables is not None):
        raise ConfigError("NEO's rules and cost tables apply to --offload neo/fastdecode, "
                          "not none")
    cls = RecordingTorchExecutor if mode is OffloadMode.NONE else NeoTorchExecutor
    base = RecordingTorchExecutor.from_name(
        model, num_device_blocks=num_device_blocks, num_host_blocks=num_host_blocks,
        block_size=block_size, seed=seed,
    )
    executor = cls(base.model, num_device_blocks=num_device_blocks,
                   num_host_blocks=num_host_blocks, block_size=block_size,
                   eos_token_id=base.eos_token_id)
    executor.record_logits = record_logits
    policy = FCFSPolicy(preemption=KVAction.SWAP)
    if mode is OffloadMode.NONE:
        config = SchedulerConfig(max_num_seqs=max_num_seqs,
                                 max_num_batched_tokens=max_num_batched_tokens)
        return Engine(executor, policy, config, WallClock())
    config = SchedulerConfig(max_num_seqs=max_num_seqs,
                             max_num_batched_tokens=max_num_batched_tokens,
                             enable_chunked_prefill=False)
    return NeoEngine(executor, policy, config, WallClock(), costs=tables or planning_tables(),
                     neo=replace(neo or NeoConfig(), offload=mode))


@dataclass(frozen=True)
class ParityResult:
    """NEO (pipelined, host attention) vs device-only sequential on the same requests."""

    max_abs_logit_diff: float
    same_tokens: bool
    num_tokens_compared: int
    num_pipelined_steps: int
    num_host_decodes: int
    host_busy_s: float
    pipelined_forward_s: float


def pipelined_parity(
    model: str = "small", num_requests: int = 8, output_len: int = 12, seed: int = 0,
    neo_device_blocks: int = 8,
) -> ParityResult:
    """Serve the same greedy requests with NEO and with the device-only engine.

    NEO gets a device pool of ``neo_device_blocks`` blocks (of 16 tokens), so most requests
    decode on the host in pipelined steps; every sampled token's logits are compared.
    """
    import random

    import torch

    rng = random.Random(seed)
    specs = [RequestSpec(f"r{i}", 0.0, rng.randint(20, 90), output_len)
             for i in range(num_requests)]
    results = {}
    engines = {}
    for mode in (OffloadMode.NONE, OffloadMode.NEO):
        engine = build_torch_engine(model, mode, seed=seed, record_logits=True,
                                    num_device_blocks=256 if mode is OffloadMode.NONE
                                    else neo_device_blocks)
        from mlsyskit.serving.model import get_model_config

        ids = random_prompt_ids(get_model_config(model).vocab_size, seed)
        run_workload(engine, specs, prompt_ids=ids, oracle_hints=False)
        ex = engine.executor
        assert isinstance(ex, RecordingTorchExecutor)
        results[mode] = ex.recorded()
        engines[mode] = engine
    base, neo = results[OffloadMode.NONE], results[OffloadMode.NEO]
    diff = 0.0
    same = True
    count = 0
    for rid, logits in base.items():
        other = neo[rid]
        same &= len(other) == len(logits)
        for a, b in zip(logits, other, strict=False):
            diff = max(diff, float((a - b).abs().max()))
            same &= int(a.argmax()) == int(b.argmax())
            count += 1
    neo_engine = engines[OffloadMode.NEO]
    ex = neo_engine.executor
    assert isinstance(ex, NeoTorchExecutor)
    ex.close()
    from mlsyskit.serving.neo.scheduler import NeoScheduler

    sched = neo_engine.scheduler
    assert isinstance(sched, NeoScheduler)
    counters = sched.neo_counters()
    del torch
    return ParityResult(
        max_abs_logit_diff=diff if count else math.nan,
        same_tokens=same,
        num_tokens_compared=count,
        num_pipelined_steps=counters.num_pipelined_steps,
        num_host_decodes=counters.num_host_decodes,
        host_busy_s=ex.overlap.host_busy_s,
        pipelined_forward_s=ex.overlap.forward_s,
    )
