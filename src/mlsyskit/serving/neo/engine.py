"""Build NEO, FastDecode+ and device-only engines for a real or simulated setup.

All three go through :class:`~mlsyskit.serving.engine.Engine`: NEO and FastDecode+ swap in a
:class:`NeoScheduler` over a :class:`NeoBlockManager`; device-only keeps the engine's own
scheduler (FCFS; swap or recompute preemption, chunked prefill with any token budget, so the
paper's vLLM-256/-512 baselines are device-only engines too). On the simulator all of them are
charged by one :class:`NeoSimExecutor`, so they meet one cost model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from mlsyskit.errors import ConfigError
from mlsyskit.serving.clock import Clock, SimClock
from mlsyskit.serving.engine import Engine
from mlsyskit.serving.executor.base import Executor
from mlsyskit.serving.executor.sim import GIB, device_kv_blocks
from mlsyskit.serving.neo.block_manager import NeoBlockManager
from mlsyskit.serving.neo.cost import CostTables, LayerCosts, RooflineLayerCosts
from mlsyskit.serving.neo.hosts import get_host
from mlsyskit.serving.neo.scheduler import NeoConfig, NeoScheduler, OffloadMode
from mlsyskit.serving.neo.sim import NeoSimExecutor
from mlsyskit.serving.policy import FCFSPolicy, KVAction, Policy
from mlsyskit.serving.scheduler import SchedulerConfig


@dataclass(frozen=True)
class DeviceOnly:
    """How the device-only (vLLM-like) baseline schedules.

    Parameters
    ----------
    chunk_tokens
        Token budget of one step with chunked prefill (the paper's vLLM-256 / vLLM-512);
        ``None``: the setup's ``max_num_batched_tokens``.
    preemption
        What a preempted request's KV does: swap to the host pool, or discard and recompute.
    """

    chunk_tokens: int | None = None
    preemption: KVAction = KVAction.SWAP

    def __post_init__(self) -> None:
        if self.chunk_tokens is not None and self.chunk_tokens < 1:
            raise ConfigError(f"chunk_tokens must be >= 1; got {self.chunk_tokens}")
        if self.preemption not in (KVAction.SWAP, KVAction.DISCARD):
            raise ConfigError(f"device-only preemption must swap or discard; got "
                              f"{self.preemption.value}")


class NeoEngine(Engine):
    """An :class:`Engine` whose scheduler is a :class:`NeoScheduler`.

    Parameters
    ----------
    costs
        What the scheduler predicts with (profiled tables).
    neo
        NEO or FastDecode+ rules.
    """

    def __init__(
        self,
        executor: Executor,
        policy: Policy,
        config: SchedulerConfig,
        clock: Clock,
        *,
        costs: LayerCosts,
        neo: NeoConfig,
    ) -> None:
        super().__init__(executor, policy, config, clock)
        self.block_manager = NeoBlockManager(
            executor.num_device_blocks, executor.num_host_blocks, executor.block_size
        )
        self.scheduler = NeoScheduler(self.config, self.block_manager, policy, costs, neo)


@dataclass(frozen=True)
class SimSetup:
    """A paper setup: model, GPU(s), host CPU and the pools and budgets of the paper's configs.

    ``num_device_blocks=None`` derives the device pool from GPU memory next to the weights.
    """

    name: str
    model: str
    gpu: str
    host: str
    tp: int = 1
    num_device_blocks: int | None = None
    host_kv_gib: float = 120.0
    max_num_seqs: int = 512
    max_num_batched_tokens: int = 8192
    block_size: int = 16

    def costs(self) -> RooflineLayerCosts:
        from mlsyskit.hardware import get_catalogue
        from mlsyskit.serving.model import get_model_config

        return RooflineLayerCosts(
            get_model_config(self.model), get_catalogue().gpu(self.gpu), get_host(self.host),
            tp=self.tp,
        )

    def pools(self) -> tuple[int, int]:
        """(device blocks, host blocks); the host pool is capped at 60% of host memory."""
        from mlsyskit.hardware import get_catalogue
        from mlsyskit.serving.model import get_model_config

        model = get_model_config(self.model)
        dev = self.num_device_blocks
        if dev is None:
            dev = device_kv_blocks(
                model, get_catalogue().gpu(self.gpu), block_size=self.block_size, tp=self.tp
            )
        host = get_host(self.host)
        gib = min(self.host_kv_gib, 0.6 * host.memory_gib)
        num_host = int(gib * GIB // (model.kv_bytes_per_token * self.block_size))
        return dev, num_host


#: the paper's setups (notes §1.6): memory settings from the authors' configs
SETUPS: dict[str, SimSetup] = {
    s.name: s
    for s in (
        # T4 + 7B: only 54 blocks (~864 tokens) of device KV, 20 GB of swap
        SimSetup("t4-7b", "llama-2-7b", "t4", "g4dn-4xlarge", num_device_blocks=54,
                 host_kv_gib=20, max_num_seqs=256, max_num_batched_tokens=4096),
        *(
            SimSetup(f"a10g-8b-{size}", "llama-3-8b", "a10g", f"g5-{size}xlarge",
                     num_device_blocks=1650, host_kv_gib=120, max_num_seqs=1024,
                     max_num_batched_tokens=20480)
            for size in ("2", "4", "8", "16")
        ),
        SimSetup("h100x2-70b", "llama-3.1-70b", "h100-sxm", "hgx-h100-host", tp=2,
                 host_kv_gib=400, max_num_seqs=1024, max_num_batched_tokens=20480),
    )
}


def get_setup(name: str) -> SimSetup:
    from mlsyskit.errors import UnknownNameError

    try:
        return SETUPS[name]
    except KeyError:
        raise UnknownNameError("NEO setup", name, sorted(SETUPS)) from None


def build_sim_engine(
    setup: SimSetup | str,
    offload: OffloadMode | str = OffloadMode.NEO,
    *,
    tables: CostTables | None = None,
    noise: float = 0.0,
    seed: int = 0,
    neo: NeoConfig | None = None,
    device_only: DeviceOnly | None = None,
) -> Engine:
    """A simulated engine on ``setup`` with NEO, FastDecode+ or device-only (``none``).

    The scheduler predicts with ``tables`` (default: sampled from the setup's roofline on NEO's
    profiling grids); the executor charges the roofline itself. ``neo`` overrides NEO's rules
    (its ``offload`` is replaced by ``offload``; e.g. ``NeoConfig.paper()``); ``device_only``
    sets the device-only baseline's chunk budget and preemption (``none`` only).

    Raises
    ------
    ConfigError
        ``device_only`` with an offloading mode, ``neo`` or ``tables`` with ``none``, or no
        device blocks.
    """
    s = get_setup(setup) if isinstance(setup, str) else setup
    mode = OffloadMode(offload) if isinstance(offload, str) else offload
    costs = s.costs()
    dev, host = s.pools()
    if dev < 1:
        raise ConfigError(f"setup {s.name}: no device KV blocks")
    executor = NeoSimExecutor(costs, num_device_blocks=dev, num_host_blocks=host,
                              block_size=s.block_size, noise=noise, seed=seed)
    if mode is OffloadMode.NONE:
        if neo is not None:
            raise ConfigError("NEO's rules apply to --offload neo/fastdecode, not none")
        if tables is not None:
            raise ConfigError("cost tables are what NEO plans with: --offload neo/fastdecode, "
                              "not none")
        base = device_only or DeviceOnly()
        config = SchedulerConfig(max_num_seqs=s.max_num_seqs,
                                 max_num_batched_tokens=base.chunk_tokens
                                 or s.max_num_batched_tokens)
        return Engine(executor, FCFSPolicy(preemption=base.preemption), config, SimClock())
    if device_only is not None:
        raise ConfigError(f"device-only options apply to --offload none, not {mode.value}")
    if tables is None:
        tables = CostTables.sample(costs, max_tokens=s.max_num_batched_tokens,
                                   source=f"roofline {s.name}")
    config = SchedulerConfig(max_num_seqs=s.max_num_seqs,
                             max_num_batched_tokens=s.max_num_batched_tokens,
                             enable_chunked_prefill=False)
    return NeoEngine(executor, FCFSPolicy(preemption=KVAction.SWAP), config, SimClock(),
                     costs=tables, neo=replace(neo or NeoConfig(), offload=mode))
