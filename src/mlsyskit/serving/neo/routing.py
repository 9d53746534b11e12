"""``--offload`` on the generic serving commands: route ``serve bench`` / ``serve run`` to NEO.

``mlsyskit serve bench --offload neo|fastdecode|none`` and ``mlsyskit serve run --offload neo``
build their engine here instead of with :func:`mlsyskit.serving.engine.build_engine`. NEO's
engines take only what NEO supports; every other combination is refused with a
:class:`~mlsyskit.errors.ConfigError` that names the option, rather than silently ignored:

* NEO's scheduler is FCFS with swap preemption (``--policy fcfs``, ``--preemption swap``);
* the simulator charges the roofline of a GPU *and a host CPU* (``--host-cpu``, a catalogue
  host), not the plain engine's fitted constants (no ``--cost-params``);
* the real executor runs presets with random weights (no ``--checkpoint``, no ``--tp``);
* NEO serves no API calls (no ``augmented`` workload).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mlsyskit.errors import ConfigError
from mlsyskit.serving.engine import Engine
from mlsyskit.serving.neo.scheduler import OffloadMode
from mlsyskit.serving.workload import RequestSpec


def check_common(offload: OffloadMode, *, policy: str, swap_preemption: bool | None) -> None:
    """Options every ``--offload`` engine shares (``swap_preemption=None``: not given)."""
    if policy != "fcfs":
        raise ConfigError(f"--offload {offload.value} runs NEO's FCFS scheduler; --policy "
                          f"{policy} is for the plain engine (drop --offload)")
    if swap_preemption is False:
        raise ConfigError(f"--offload {offload.value} preempts by swapping to the host pool; "
                          "--preemption recompute is for the plain engine")


def build_offload_sim_engine(
    offload: OffloadMode,
    *,
    model: str,
    hardware: str,
    host_cpu: str | None,
    tp: int = 1,
    num_device_blocks: int | None = None,
    max_num_seqs: int = 256,
    max_num_batched_tokens: int = 2048,
    seed: int = 0,
) -> Engine:
    """A simulated ``offload`` engine for ``tp`` x ``hardware`` with a ``host_cpu`` host.

    Raises
    ------
    ConfigError
        Without ``host_cpu`` (host attention speed depends on it).
    UnknownNameError
        For an unknown model, GPU or host.
    """
    from mlsyskit.serving.neo.engine import SimSetup, build_sim_engine
    from mlsyskit.serving.neo.hosts import get_host

    if host_cpu is None:
        raise ConfigError(f"--offload {offload.value} on the simulator needs --host-cpu (a "
                          "catalogue host CPU, e.g. g5-16xlarge; `mlsyskit serve neo setups` "
                          "lists the paper's)")
    get_host(host_cpu)  # unknown names fail here, naming the choices
    setup = SimSetup(f"{tp}x{hardware}+{host_cpu}", model, hardware, host_cpu, tp=tp,
                     num_device_blocks=num_device_blocks, max_num_seqs=max_num_seqs,
                     max_num_batched_tokens=max_num_batched_tokens)
    return build_sim_engine(setup, offload, seed=seed)


def build_offload_torch_engine(
    offload: OffloadMode,
    *,
    model: str,
    tp: int = 1,
    host_cpu: str | None = None,
    checkpoint: object | None = None,
    block_size: int = 16,
    num_device_blocks: int = 16,
    num_host_blocks: int = 512,
    max_num_seqs: int = 64,
    max_num_batched_tokens: int = 1024,
    seed: int = 0,
) -> Engine:
    """A real ``offload`` engine on this CPU (a preset model with random weights)."""
    from mlsyskit.serving.neo.real import build_torch_engine

    if tp != 1:
        raise ConfigError(f"--offload {offload.value} on the real executor runs one process; "
                          f"--tp {tp} is for the simulator")
    if host_cpu is not None:
        raise ConfigError("--host-cpu is for the simulator; the real executor's host is this "
                          "machine")
    if checkpoint is not None:
        raise ConfigError(f"--offload {offload.value} serves presets only; --checkpoint is not "
                          "supported with it")
    if offload is not OffloadMode.NONE and num_host_blocks < 1:
        raise ConfigError(f"--offload {offload.value} needs a host pool (num_host_blocks > 0)")
    return build_torch_engine(model, offload, num_device_blocks=num_device_blocks,
                              num_host_blocks=num_host_blocks, block_size=block_size,
                              max_num_seqs=max_num_seqs,
                              max_num_batched_tokens=max_num_batched_tokens, seed=seed)


def check_workload_name(offload: OffloadMode, workload: str) -> None:
    """Refuse the ``augmented`` workload by name, before its trace is even looked for."""
    if offload is not OffloadMode.NONE and workload.strip().lower() == "augmented":
        raise ConfigError(f"--offload {offload.value}: NEO does not serve requests with API "
                          "calls (the augmented workload); use poisson, gamma, alpaca or a trace")


def check_workload(offload: OffloadMode, specs: Sequence[RequestSpec]) -> None:
    """NEO serves no API calls: refuse such a workload before serving anything."""
    if offload is not OffloadMode.NONE and any(s.api_calls for s in specs):
        raise ConfigError(f"--offload {offload.value}: NEO does not serve requests with API "
                          "calls (the augmented workload); use poisson, gamma, alpaca or a trace")


def build_for_bench(
    offload: OffloadMode,
    *,
    executor: str,
    model: str,
    hardware: str,
    tp: int,
    host_cpu: str | None,
    policy: str,
    preemption: str | None,
    cost_params: Path | None,
    num_device_blocks: int | None,
    max_num_seqs: int,
    max_num_batched_tokens: int,
    specs: Sequence[RequestSpec],
    seed: int,
) -> Engine:
    """The engine of ``mlsyskit serve bench --offload ...`` (``executor``: sim or torch).

    Raises
    ------
    ConfigError
        For an option NEO's engines do not support (see the module docstring).
    """
    check_common(offload, policy=policy,
                 swap_preemption=None if preemption is None else preemption == "swap")
    if cost_params is not None:
        raise ConfigError(f"--offload {offload.value} simulates a GPU + host pair from the "
                          "catalogue; --cost-params (fitted for the plain engine) does not apply")
    check_workload(offload, specs)
    if executor == "sim":
        return build_offload_sim_engine(
            offload, model=model, hardware=hardware, host_cpu=host_cpu, tp=tp,
            num_device_blocks=num_device_blocks, max_num_seqs=max_num_seqs,
            max_num_batched_tokens=max_num_batched_tokens, seed=seed)
    return build_offload_torch_engine(
        offload, model=model, tp=tp, host_cpu=host_cpu,
        num_device_blocks=64 if num_device_blocks is None else num_device_blocks,
        max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens, seed=seed)


def describe(engine: Engine) -> str | None:
    """One line of NEO's decisions for a finished run (``None`` for a plain engine)."""
    from mlsyskit.serving.neo.scheduler import NeoScheduler

    if not isinstance(engine.scheduler, NeoScheduler):
        return None
    c = engine.scheduler.neo_counters()
    return (f"NEO: {c.num_pipelined_steps} pipelined / {c.num_sequential_steps} sequential "
            f"steps; {c.num_host_decodes} host decodes, {c.num_device_decodes} device decodes; "
            f"{c.num_swap_ins} swap-ins")


def close(engine: Engine) -> None:
    """Stop a real NEO executor's host thread (no-op otherwise)."""
    stop = getattr(engine.executor, "close", None)
    if stop is not None:
        stop()
