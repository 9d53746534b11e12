"""Step-time cost model: a roofline over a step's FLOPs and bytes, plus fixed costs.

For one step with ``S`` new tokens over ``n`` sequences whose contexts sum to ``C`` tokens and
whose attention covers ``P = Σ new_i × ctx_i`` query-key pairs, on ``tp`` GPUs::

    compute = (2·P_dense·S + 2·V·d·n) / tp · s_per_flop  +  4·L·H·h·P / tp · s_per_attn_flop
    memory  = (W + kv_bytes_per_token·C) / tp · s_per_byte
    t       = overhead + n·s_per_seq + max(compute, memory)
              + prefill_overhead (if any sequence has more than one new token)
              + 2·L·allreduce(S·d·bytes) + swapped_bytes · s_per_link_byte

``P_dense`` are the parameters touched per token (layers), ``V·d`` the LM head applied to the
last token of each sequence, ``W`` the weight bytes read once per step. The constants are either
derived from a catalogue GPU and efficiency factors (:meth:`CostParams.from_hardware`) or fitted
to measured steps (:mod:`mlsyskit.serving.calibrate`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from mlsyskit.errors import ConfigError, DataError
from mlsyskit.hardware import GPU, get_catalogue

if TYPE_CHECKING:
    from mlsyskit.serving.plan import StepPlan


class ModelShape(Protocol):
    """What the cost model needs of a model (``mlsyskit.serving.model.ModelConfig`` has it)."""

    @property
    def name(self) -> str: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def hidden_size(self) -> int: ...
    @property
    def num_layers(self) -> int: ...
    @property
    def num_heads(self) -> int: ...
    @property
    def head_dim(self) -> int: ...
    @property
    def dtype_bytes(self) -> int: ...
    @property
    def num_params(self) -> int: ...
    @property
    def weight_bytes(self) -> int: ...
    @property
    def kv_bytes_per_token(self) -> int: ...


@dataclass(frozen=True)
class CostParams:
    """The constants of the step-time formula (see the module docstring), in seconds per unit.

    Parameters
    ----------
    overhead_s
        Fixed cost per step (scheduling, kernel launches, sampling).
    s_per_seq
        Cost per sequence in the batch (per-sequence attention setup; ~0 on a GPU).
    s_per_flop, s_per_attn_flop
        Seconds per FLOP of dense layers and of attention: 1 / (peak × efficiency).
    s_per_byte
        Seconds per byte read from device memory: 1 / (bandwidth × efficiency).
    s_per_link_byte
        Seconds per byte swapped over the host link.
    s_per_comm_byte
        Seconds per byte of tensor-parallel all-reduce traffic; ``comm_latency_s`` per call.
    prefill_overhead_s
        Extra fixed cost of a step that has multi-token queries (a second attention kernel
        for prefills next to the decode one).
    """

    overhead_s: float
    s_per_seq: float
    s_per_flop: float
    s_per_attn_flop: float
    s_per_byte: float
    s_per_link_byte: float = 0.0
    s_per_comm_byte: float = 0.0
    comm_latency_s: float = 0.0
    source: str = ""
    prefill_overhead_s: float = 0.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if name != "source" and not value >= 0:
                raise ConfigError(f"cost parameter {name} must be >= 0; got {value}")

    @classmethod
    def from_hardware(
        cls,
        gpu: GPU | str,
        *,
        flops_efficiency: float = 0.6,
        attn_flops_efficiency: float = 0.4,
        bandwidth_efficiency: float = 0.8,
        link_efficiency: float = 0.8,
        overhead_s: float = 0.004,
        tp_link: str = "nvlink4",
    ) -> CostParams:
        """Roofline constants for a catalogue GPU.

        The default efficiencies are typical achieved fractions of peak for dense GEMMs (0.6),
        FlashAttention-style kernels (0.4) and HBM streaming (0.8); ``overhead_s`` stands for
        vLLM's per-step CPU work (scheduling, launches, sampling), a few milliseconds.
        """
        catalogue = get_catalogue()
        device = catalogue.gpu(gpu) if isinstance(gpu, str) else gpu
        link = catalogue.link(device.host_link)
        comm = catalogue.link(tp_link)
        return cls(
            overhead_s=overhead_s,
            s_per_seq=0.0,
            s_per_flop=1.0 / (device.fp16_flops_per_s * flops_efficiency),
            s_per_attn_flop=1.0 / (device.fp16_flops_per_s * attn_flops_efficiency),
            s_per_byte=1.0 / (device.mem_bw_bytes_per_s * bandwidth_efficiency),
            s_per_link_byte=1.0 / (link.bandwidth_bytes_per_s * link_efficiency),
            s_per_comm_byte=1.0 / (comm.bandwidth_bytes_per_s * link_efficiency),
            comm_latency_s=comm.latency_us * 1e-6,
            source=f"roofline {device.name} (flops x{flops_efficiency}, attention "
            f"x{attn_flops_efficiency}, bandwidth x{bandwidth_efficiency}, link {link.name} "
            f"x{link_efficiency}, TP over {comm.name})",
        )

    def to_json(self, path: Path, **extra: object) -> None:
        """Write the constants (and ``extra`` metadata such as fit errors) as JSON."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"cost_params": asdict(self), **extra}, indent=2))

    @classmethod
    def from_json(cls, path: Path) -> CostParams:
        """Read constants written by :meth:`to_json` (raises :class:`DataError` naming the file)."""
        try:
            data = json.loads(path.read_text())
            return cls(**data["cost_params"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path}: not a cost-model file ({exc})") from exc


class CostModel:
    """Prices a step of one model on one (or ``tp``) device(s) with :class:`CostParams`."""

    def __init__(self, model: ModelShape, params: CostParams, *, tp: int = 1) -> None:
        if tp < 1:
            raise ConfigError(f"tensor parallel degree must be >= 1; got {tp}")
        self.model = model
        self.params = params
        self.tp = tp
        d = model.hidden_size
        head = model.vocab_size * d
        # dense FLOPs per token through the layers (embedding lookup is free, LM head per seq)
        self._flops_per_token = 2.0 * (model.num_params - 2 * head) / tp
        self._flops_per_seq = 2.0 * head / tp
        self._attn_flops_per_pair = 4.0 * model.num_layers * model.num_heads * model.head_dim / tp
        self._weight_bytes = model.weight_bytes / tp
        self._kv_bytes_per_token = model.kv_bytes_per_token / tp
        # ring all-reduce: 2 per layer, each moving 2(tp-1)/tp of the activations
        self._comm_bytes_per_token = (
            2 * model.num_layers * 2 * (tp - 1) / tp * d * model.dtype_bytes if tp > 1 else 0.0
        )
        self._comm_calls = 2 * model.num_layers if tp > 1 else 0

    def features(
        self, num_tokens: int, num_seqs: int, sum_context: int, attention_pairs: int
    ) -> tuple[float, float, float, float]:
        """(dense FLOPs, attention FLOPs, bytes read, communication bytes) of one step."""
        return (
            self._flops_per_token * num_tokens + self._flops_per_seq * num_seqs,
            self._attn_flops_per_pair * attention_pairs,
            self._weight_bytes + self._kv_bytes_per_token * sum_context,
            self._comm_bytes_per_token * num_tokens,
        )

    def step_time(
        self,
        num_tokens: int,
        num_seqs: int,
        sum_context: int,
        attention_pairs: int,
        num_swapped_tokens: int = 0,
        num_prefill_seqs: int = 0,
    ) -> float:
        """Seconds for one step (0 when the step does nothing)."""
        if num_seqs == 0 and num_swapped_tokens == 0:
            return 0.0
        p = self.params
        if num_seqs == 0:  # a step that only copies blocks
            return p.overhead_s + num_swapped_tokens * self._kv_bytes_per_token * p.s_per_link_byte
        dense, attn, nbytes, comm = self.features(num_tokens, num_seqs, sum_context,
                                                  attention_pairs)
        compute = dense * p.s_per_flop + attn * p.s_per_attn_flop
        memory = nbytes * p.s_per_byte
        t = p.overhead_s + num_seqs * p.s_per_seq + (compute if compute > memory else memory)
        if num_prefill_seqs:
            t += p.prefill_overhead_s
        if self._comm_calls and num_tokens:
            t += comm * p.s_per_comm_byte + self._comm_calls * p.comm_latency_s
        if num_swapped_tokens:
            # each GPU moves its own KV shard over its own host link, in parallel
            t += num_swapped_tokens * self._kv_bytes_per_token * p.s_per_link_byte
        return t


def padded_attention_work(plan: StepPlan) -> tuple[int, int]:
    """(context tokens read, query-key pairs) when attention pads like the CPU executor does.

    The real executor batches decodes (one new token) together padded to the longest decode
    context, and longer queries together padded to the longest query and context. A GPU paged
    kernel does no such padding, so the simulator uses the exact sums unless told otherwise.
    """
    dec_n = dec_max = pre_n = pre_q = pre_ctx = 0
    for n, ctx in zip(plan.num_new_tokens, plan.context_lens, strict=True):
        if n == 1:
            dec_n += 1
            dec_max = max(dec_max, ctx)
        else:
            pre_n += 1
            pre_q = max(pre_q, n)
            pre_ctx = max(pre_ctx, ctx)
    reads = dec_n * dec_max + pre_n * pre_ctx
    return reads, dec_n * dec_max + pre_n * pre_q * pre_ctx
