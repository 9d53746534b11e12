from __future__ import annotations

import numpy as np
import pytest

from mlsyskit.errors import ConfigError
from mlsyskit.training.minder.generator import (
    METRICS,
    FaultType,
    TraceConfig,
    generate_set,
    generate_trace,
)


def test_same_seed_same_trace_and_labels() -> None:
    a = generate_set(3, 1, seed=5, machine_choices=(8,), duration_s=300)
    b = generate_set(3, 1, seed=5, machine_choices=(8,), duration_s=300)
    for x, y in zip(a.traces, b.traces, strict=True):
        np.testing.assert_array_equal(x.frame.values, y.frame.values)
        assert x.faults == y.faults
    assert (a.num_faults, a.num_fault_free) == (3, 1)


@pytest.mark.parametrize("kind", list(FaultType))
def test_every_fault_is_labelled_inside_the_trace(kind: FaultType) -> None:
    trace = generate_trace(TraceConfig(num_machines=8, fault=kind), np.random.default_rng(1))
    (label,) = trace.faults
    assert label.fault_type == kind.value and label.machine in trace.frame.machines
    assert 60 <= label.start_s < label.end_s <= 899
    assert trace.frame.values.shape == (len(METRICS), 8, 900)
    assert np.all(trace.frame.values >= 0)


def test_cpu_contention_raises_the_victims_cpu_only() -> None:
    trace = generate_trace(TraceConfig(num_machines=8, fault=FaultType.CPU_CONTENTION),
                           np.random.default_rng(2))
    f = trace.faults[0]
    victim = trace.frame.machines.index(f.machine)
    cpu = trace.frame.metric("cpu_usage")[:, int(f.start_s) + 10 : int(f.end_s)]
    others = np.delete(cpu, victim, axis=0)
    assert cpu[victim].mean() > 55 > others.mean()


def test_a_hung_machine_stops_reporting() -> None:
    trace = generate_trace(TraceConfig(num_machines=6, fault=FaultType.MACHINE_HANG),
                           np.random.default_rng(3))
    f = trace.faults[0]
    victim = trace.frame.machines.index(f.machine)
    assert not trace.reported[victim, int(f.start_s):].any()
    table = trace.table()
    assert table[table["machine"] == f.machine]["timestamp"].max() < f.start_s + 1


def test_fault_free_trace_has_no_labels_and_bad_config_is_rejected() -> None:
    assert generate_trace(TraceConfig(num_machines=4), np.random.default_rng(0)).faults == []
    with pytest.raises(ConfigError, match="num_machines"):
        TraceConfig(num_machines=1)
    with pytest.raises(ConfigError, match="unknown metrics"):
        TraceConfig(metrics=("nope",))


def test_spikes_are_rare_one_second_bursts_on_top_of_the_same_trace() -> None:
    clean = generate_trace(TraceConfig(num_machines=16, fault=FaultType.STRAGGLER),
                           np.random.default_rng(4))
    spiky = generate_trace(TraceConfig(num_machines=16, fault=FaultType.STRAGGLER,
                                       spike_rate=0.02), np.random.default_rng(4))
    assert spiky.faults == clean.faults
    uncapped = [METRICS.index(m) for m in ("pfc_tx_rate", "gpu_power", "nvlink_bw",
                                           "nic_throughput", "memory_used", "step_time")]
    a, b = clean.frame.values[uncapped], spiky.frame.values[uncapped]
    burst = ~np.isclose(a, b)
    assert 0.015 < burst.mean() < 0.025  # about the rate (16 x 900 x 6 samples)
    ratio = b[burst] / a[burst]
    assert ratio.min() >= 1.5 - 1e-4 and ratio.max() <= 4.0 + 1e-4
    with pytest.raises(ConfigError, match="spike_rate"):
        TraceConfig(spike_rate=0.6)
