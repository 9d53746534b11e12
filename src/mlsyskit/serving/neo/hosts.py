"""Host-CPU attention throughput: what a host can stream through decode attention.

CPU decode attention reads each cached K/V byte once and does ``H_q / H_kv`` multiply-adds
per byte pair (so ~1 FLOP per byte for MHA, ``g`` for GQA with group ``g``). Its time is then a
roofline over two host limits::

    t_cdec = max( kv_bytes / (η_mem · socket_peak_bw),
                  flops / (num_cores · core_flops · η_simd) )

The socket peak comes from the hardware catalogue; the per-core SIMD peak (clock × FMA width)
comes from :data:`CORE_PEAKS`, a datasheet number per micro-architecture, which is the
*per-core limit*: a 4-core VM cannot pull a socket's full bandwidth through attention because
it runs out of arithmetic first. ``η_mem`` and ``η_simd`` are two global efficiency factors
shared by every host (they are not fitted per preset; see ``docs/systems/neo.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

from mlsyskit.errors import ConfigError
from mlsyskit.hardware import HostCPU, get_catalogue

#: fraction of the socket's peak DRAM bandwidth a streaming kernel reaches (STREAM-like)
ETA_MEM = 0.6
#: fraction of the per-core fp32 FMA peak a CPU attention kernel reaches (fp16 loads, softmax)
ETA_SIMD = 0.25


@dataclass(frozen=True)
class CorePeak:
    """fp32 peak of one core: ``clock_ghz × flops_per_cycle`` (2 per FMA lane)."""

    microarchitecture: str
    clock_ghz: float
    flops_per_cycle: int
    source: str

    @property
    def flops_per_s(self) -> float:
        return self.clock_ghz * 1e9 * self.flops_per_cycle


#: per-core SIMD peaks by CPU model string prefix (datasheet clocks and FMA widths)
CORE_PEAKS: dict[str, CorePeak] = {
    "Intel Xeon Platinum 8259CL": CorePeak(
        "cascade-lake", 2.5, 64,
        "Intel: 2.5 GHz base; AVX-512 with 2 FMA units = 2x16 fp32 FMA = 64 FLOP/cycle",
    ),
    "AMD EPYC 7R32": CorePeak(
        "zen2", 2.8, 32,
        "AWS g5 page: 2.8 GHz all-core; Zen 2: 2 x 256-bit FMA = 2x8 fp32 FMA = 32 FLOP/cycle",
    ),
    "2x Intel Xeon Platinum 8480+": CorePeak(
        "sapphire-rapids", 2.0, 64,
        "Intel: 2.0 GHz base; AVX-512 with 2 FMA units = 64 FLOP/cycle",
    ),
}

#: host of the 2x H100 runs; the paper's HGX host is not named, so this is an assumption
HGX_H100_HOST = HostCPU(
    name="hgx-h100-host",
    display_name="HGX H100 host (assumed 2x Xeon Platinum 8480+)",
    sources={
        "num_cores": "assumption: a typical HGX H100 host, 2 x 56 cores (Intel ARK)",
        "mem_bw_gbs": "assumption: 2 sockets x 8 channels DDR5-4800 x 8 B = 614 GB/s peak",
        "memory_gib": "assumption: 2 TB",
    },
    cpu_model="2x Intel Xeon Platinum 8480+",
    num_cores=112,
    num_vcpus=224,
    memory_gib=2048,
    mem_bw_gbs=614,
)


def get_host(name: str) -> HostCPU:
    """A catalogue host CPU, or the assumed HGX host (``hgx-h100-host``)."""
    if name == HGX_H100_HOST.name:
        return HGX_H100_HOST
    return get_catalogue().cpu(name)


@dataclass(frozen=True)
class HostAttentionSpeed:
    """Effective rates of a host for decode attention.

    Attributes
    ----------
    bytes_per_s
        KV bytes per second the memory system delivers (``η_mem`` × socket peak).
    flops_per_s
        Attention FLOP/s all cores deliver (``η_simd`` × cores × core peak).
    """

    host: str
    bytes_per_s: float
    flops_per_s: float

    def effective_bytes_per_s(self, flops_per_byte: float) -> float:
        """KV bytes/s attention streams at ``flops_per_byte`` (the min of the two limits)."""
        return min(self.bytes_per_s, self.flops_per_s / flops_per_byte)


def host_attention_speed(
    host: HostCPU, *, eta_mem: float = ETA_MEM, eta_simd: float = ETA_SIMD
) -> HostAttentionSpeed:
    """The two rate limits of ``host``.

    Raises
    ------
    ConfigError
        If the host's CPU model has no per-core peak in :data:`CORE_PEAKS`.
    """
    peak = next((v for k, v in CORE_PEAKS.items() if host.cpu_model.startswith(k)), None)
    if peak is None:
        raise ConfigError(
            f"host {host.name}: no per-core peak for CPU model {host.cpu_model!r}; known: "
            f"{sorted(CORE_PEAKS)}"
        )
    if not (0 < eta_mem <= 1 and 0 < eta_simd <= 1):
        raise ConfigError(f"efficiencies must be in (0, 1]; got {eta_mem}, {eta_simd}")
    return HostAttentionSpeed(
        host=host.name,
        bytes_per_s=eta_mem * host.mem_bw_bytes_per_s,
        flops_per_s=eta_simd * host.num_cores * peak.flops_per_s,
    )
