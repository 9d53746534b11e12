"""Per-layer costs of NEO's building blocks, and the profiled tables its scheduler predicts with.

NEO's scheduler reasons per decoder layer about four kinds of work (paper §1.5):

* ``linr(S)``: the linear layers (QKV/O projections, MLP) over ``S`` batch tokens, on the device;
* ``pref(s)``: prefill attention of one prompt of ``s`` tokens, on the device;
* ``gdec(N)``: paged decode attention of device-resident requests with ``N`` context tokens;
* ``cdec(n, N)``: host-CPU decode attention of ``n`` host-resident requests, ``N`` context tokens;

plus ``lnch``, a constant per layer for launching work from the host thread. Two sources
implement :class:`LayerCosts`:

* :class:`RooflineLayerCosts` - the *true* costs of a simulated GPU + host pair, from the hardware
  catalogue (the simulator charges these);
* :class:`CostTables` - interpolated tables, either sampled from a roofline (what a profiler would
  measure on that pair) or measured on the real executor (:mod:`mlsyskit.serving.neo.profiler`).
  The scheduler predicts with these, so its predictions differ from what it is charged.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from mlsyskit.errors import ConfigError, DataError
from mlsyskit.hardware import GPU, HostCPU, get_catalogue
from mlsyskit.serving.executor.cost_model import CostParams
from mlsyskit.serving.neo.hosts import ETA_MEM, ETA_SIMD, host_attention_speed

if TYPE_CHECKING:  # the model package imports torch; the simulator does not need it
    from mlsyskit.serving.model import ModelConfig

#: host-side launch + q/k/v round trip per layer and sub-batch, seconds. NEO's code uses 0.8 ms
#: (``lnch_T``, measured on its Python runtime); we assume a leaner 0.2 ms. With 0.8 ms the
#: roofline A10G leaves less slack for host attention: the steady offline gain on g5.16xlarge
#: (output 400) falls from +106% to +72% (see docs/systems/neo.md).
PAPER_LNCH_S = 0.8e-3
LNCH_S = 0.2e-3


class LayerCosts(Protocol):
    """Per-layer times in seconds (see the module docstring) and per-step extras."""

    @property
    def num_layers(self) -> int: ...
    @property
    def lnch_s(self) -> float: ...

    def linr(self, num_tokens: int) -> float: ...
    def pref(self, prompt_len: int) -> float: ...
    def gdec(self, num_context_tokens: int) -> float: ...
    def cdec(self, num_requests: int, num_context_tokens: int) -> float: ...
    def step_extra(self, num_seqs: int) -> float: ...
    def link(self, num_kv_tokens: int) -> float: ...


class RooflineLayerCosts:
    """True per-layer costs of ``model`` on ``tp`` × ``gpu`` with a ``host`` CPU.

    Linear layers are a roofline of weight reads and GEMM FLOPs (plus two ring all-reduces per
    layer under tensor parallelism); attention on the device streams KV at the device's
    bandwidth; attention on the host follows :mod:`mlsyskit.serving.neo.hosts`. The host serves
    the attention of every tensor-parallel shard, so its cost does not shrink with ``tp``.

    Parameters
    ----------
    params
        Device constants (:meth:`CostParams.from_hardware` by default).
    lnch_s
        Host launch overhead per layer and sub-batch (NEO's 0.8 ms).
    eta_mem, eta_simd
        Host efficiency factors (see :mod:`mlsyskit.serving.neo.hosts`).
    """

    def __init__(
        self,
        model: ModelConfig,
        gpu: GPU,
        host: HostCPU,
        *,
        tp: int = 1,
        params: CostParams | None = None,
        lnch_s: float = LNCH_S,
        eta_mem: float = ETA_MEM,
        eta_simd: float = ETA_SIMD,
    ) -> None:
        if tp < 1:
            raise ConfigError(f"tp must be >= 1; got {tp}")
        self.model = model
        self.tp = tp
        self.num_layers = model.num_layers
        self.lnch_s = lnch_s
        self.params = params or CostParams.from_hardware(gpu)
        p = self.params
        d, b = model.hidden_size, model.dtype_bytes
        self._lin_flops_per_token = 2.0 * model.params_per_layer / tp * p.s_per_flop
        self._lin_bytes = model.params_per_layer * b / tp * p.s_per_byte
        self._attn_per_pair = 4.0 * model.num_heads * model.head_dim / tp * p.s_per_attn_flop
        self.kv_bytes_per_token_layer = 2 * model.num_kv_heads * model.head_dim * b
        self._gdec_per_token = self.kv_bytes_per_token_layer / tp * p.s_per_byte
        speed = host_attention_speed(host, eta_mem=eta_mem, eta_simd=eta_simd)
        self.host_speed = speed
        flops_per_byte = model.num_heads / model.num_kv_heads  # 4·Hq·hd / (2·Hkv·hd·2 B)
        self.host_kv_bytes_per_s = speed.effective_bytes_per_s(flops_per_byte)
        self._cdec_per_token = self.kv_bytes_per_token_layer / self.host_kv_bytes_per_s
        # q, k, v of one token to the host and the output back, per request and layer
        qkv_bytes = (2 * model.num_heads + 2 * model.num_kv_heads) * model.head_dim * b / tp
        self._cdec_per_req = qkv_bytes * p.s_per_link_byte
        if tp > 1:
            self._comm_per_token = 2 * 2 * (tp - 1) / tp * d * b * p.s_per_comm_byte
            self._comm_fixed = 2 * p.comm_latency_s
        else:
            self._comm_per_token = self._comm_fixed = 0.0
        head = model.vocab_size * d
        self._head_flops_per_seq = 2.0 * head / tp * p.s_per_flop
        self._head_bytes = head * b / tp * p.s_per_byte
        self._link_per_token = model.kv_bytes_per_token / tp * p.s_per_link_byte

    def linr(self, num_tokens: int) -> float:
        if num_tokens <= 0:
            return 0.0
        t = max(self._lin_flops_per_token * num_tokens, self._lin_bytes)
        return t + self._comm_per_token * num_tokens + self._comm_fixed

    def pref(self, prompt_len: int) -> float:
        return self._attn_per_pair * prompt_len * prompt_len

    def gdec(self, num_context_tokens: int) -> float:
        return self._gdec_per_token * num_context_tokens

    def cdec(self, num_requests: int, num_context_tokens: int) -> float:
        if num_requests <= 0:
            return 0.0
        return self._cdec_per_token * num_context_tokens + self._cdec_per_req * num_requests

    def step_extra(self, num_seqs: int) -> float:
        """Per-step overhead plus the LM head over ``num_seqs`` last tokens."""
        if num_seqs <= 0:
            return 0.0
        head = max(self._head_flops_per_seq * num_seqs, self._head_bytes)
        return self.params.overhead_s + head

    def link(self, num_kv_tokens: int) -> float:
        """Seconds to move ``num_kv_tokens`` tokens of KV (all layers) over the host link."""
        return self._link_per_token * num_kv_tokens


def roofline_costs(
    model: ModelConfig | str, gpu: str, host: str, *, tp: int = 1, lnch_s: float = LNCH_S,
    eta_mem: float = ETA_MEM, eta_simd: float = ETA_SIMD,
) -> RooflineLayerCosts:
    """:class:`RooflineLayerCosts` from catalogue names (``host`` may be ``hgx-h100-host``)."""
    from mlsyskit.serving.model import get_model_config
    from mlsyskit.serving.neo.hosts import get_host

    shape = get_model_config(model) if isinstance(model, str) else model
    return RooflineLayerCosts(shape, get_catalogue().gpu(gpu), get_host(host), tp=tp,
                              lnch_s=lnch_s, eta_mem=eta_mem, eta_simd=eta_simd)


def _interp(grid: Sequence[float], values: Sequence[float], x: float) -> float:
    """Piecewise-linear interpolation, extrapolating linearly past either end."""
    n = len(grid)
    if n == 1:
        return float(values[0])
    i = bisect.bisect_right(grid, x) - 1
    i = 0 if i < 0 else (n - 2 if i > n - 2 else i)
    x0, x1 = grid[i], grid[i + 1]
    y = values[i] + (values[i + 1] - values[i]) * (x - x0) / (x1 - x0)
    return y if y > 0.0 else 0.0


def linr_grid(max_tokens: int) -> list[int]:
    """NEO's table widths: 1..511 (every 8 here), then powers of two up to ``max_tokens``."""
    grid = [1, *range(8, 512, 8)]
    s = 512
    while s < max_tokens:
        grid.append(s)
        s *= 2
    grid.append(max(s, max_tokens))
    return grid


def pow2_grid(top: int, start: int = 1) -> list[int]:
    grid, s = [], start
    while s < top:
        grid.append(s)
        s *= 2
    grid.append(max(s, top))
    return grid


@dataclass(frozen=True)
class CostTables:
    """NEO's profiled per-layer tables with linear (bilinear for ``cdec``) interpolation.

    Attributes
    ----------
    linr_x, linr_s
        Batch widths (tokens) and seconds per layer.
    pref_x, pref_s
        Prompt lengths and prefill attention seconds per layer.
    gdec_x, gdec_s
        Total device-decode context tokens and seconds per layer.
    cdec_n, cdec_x, cdec_s
        CPU-decode request counts (rows), total context tokens (columns), seconds per layer.
    lnch_s, extra_fixed_s, extra_per_seq_s, link_per_token_s
        Host launch constant per layer; per-step fixed and per-sequence extras; link seconds
        per KV token.
    source
        Where the tables came from (roofline preset or measured executor).
    """

    num_layers: int
    linr_x: tuple[int, ...]
    linr_s: tuple[float, ...]
    pref_x: tuple[int, ...]
    pref_s: tuple[float, ...]
    gdec_x: tuple[int, ...]
    gdec_s: tuple[float, ...]
    cdec_n: tuple[int, ...]
    cdec_x: tuple[int, ...]
    cdec_s: tuple[tuple[float, ...], ...]
    lnch_s: float
    extra_fixed_s: float
    extra_per_seq_s: float
    link_per_token_s: float
    source: str = ""

    def __post_init__(self) -> None:
        for name in ("linr", "pref", "gdec"):
            xs = getattr(self, f"{name}_x")
            if len(xs) != len(getattr(self, f"{name}_s")) or list(xs) != sorted(set(xs)):
                raise DataError(f"cost table {name}: grid must be strictly increasing and "
                                "match its values")
        if len(self.cdec_s) != len(self.cdec_n) or any(
            len(row) != len(self.cdec_x) for row in self.cdec_s
        ):
            raise DataError("cost table cdec: shape does not match its grids")
        object.__setattr__(self, "_cdec_rows", tuple(tuple(r) for r in self.cdec_s))

    # --- lookups ---------------------------------------------------------------------------
    def linr(self, num_tokens: int) -> float:
        return 0.0 if num_tokens <= 0 else _interp(self.linr_x, self.linr_s, num_tokens)

    def pref(self, prompt_len: int) -> float:
        return 0.0 if prompt_len <= 0 else _interp(self.pref_x, self.pref_s, prompt_len)

    def gdec(self, num_context_tokens: int) -> float:
        if num_context_tokens <= 0:
            return 0.0
        return _interp(self.gdec_x, self.gdec_s, num_context_tokens)

    def cdec(self, num_requests: int, num_context_tokens: int) -> float:
        """Bilinear: interpolate the two request-count rows around ``num_requests``."""
        if num_requests <= 0:
            return 0.0
        ns = self.cdec_n
        rows = self._cdec_rows  # type: ignore[attr-defined]
        if len(ns) == 1:
            return _interp(self.cdec_x, rows[0], num_context_tokens)
        i = bisect.bisect_right(ns, num_requests) - 1
        i = 0 if i < 0 else (len(ns) - 2 if i > len(ns) - 2 else i)
        lo = _interp(self.cdec_x, rows[i], num_context_tokens)
        hi = _interp(self.cdec_x, rows[i + 1], num_context_tokens)
        y = lo + (hi - lo) * (num_requests - ns[i]) / (ns[i + 1] - ns[i])
        return y if y > 0.0 else 0.0

    def step_extra(self, num_seqs: int) -> float:
        return 0.0 if num_seqs <= 0 else self.extra_fixed_s + self.extra_per_seq_s * num_seqs

    def link(self, num_kv_tokens: int) -> float:
        return self.link_per_token_s * num_kv_tokens

    # --- construction ----------------------------------------------------------------------
    @classmethod
    def sample(
        cls,
        costs: LayerCosts,
        *,
        max_tokens: int = 8192,
        max_context_tokens: int = 1 << 20,
        max_requests: int = 1024,
        source: str = "",
    ) -> CostTables:
        """Tables sampled from any :class:`LayerCosts` on NEO's grids (a "profile" of it)."""
        linr_x = linr_grid(max_tokens)
        pref_x = pow2_grid(max_tokens, 16)
        ctx_x = [0, *pow2_grid(max_context_tokens, 256)]
        n_x = pow2_grid(max_requests)
        return cls(
            num_layers=costs.num_layers,
            linr_x=tuple(linr_x),
            linr_s=tuple(costs.linr(s) for s in linr_x),
            pref_x=tuple(pref_x),
            pref_s=tuple(costs.pref(s) for s in pref_x),
            gdec_x=tuple(ctx_x),
            gdec_s=tuple(costs.gdec(n) for n in ctx_x),
            cdec_n=tuple(n_x),
            cdec_x=tuple(ctx_x),
            cdec_s=tuple(tuple(costs.cdec(n, c) for c in ctx_x) for n in n_x),
            lnch_s=costs.lnch_s,
            extra_fixed_s=costs.step_extra(1),
            extra_per_seq_s=max(0.0, costs.step_extra(2) - costs.step_extra(1)),
            link_per_token_s=costs.link(1),
            source=source,
        )

    def to_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def from_json(cls, path: Path) -> CostTables:
        """Tables written by :meth:`to_json` (raises :class:`DataError` naming the file)."""
        try:
            data = json.loads(path.read_text())
            for key, value in data.items():
                if isinstance(value, list):
                    data[key] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
            return cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise DataError(f"{path}: not a NEO cost-table file ({exc})") from exc


def sum_pref(costs: LayerCosts, prompt_lens: Sequence[int]) -> float:
    """Prefill attention of several prompts (per layer)."""
    return math.fsum(costs.pref(s) for s in prompt_lens)
