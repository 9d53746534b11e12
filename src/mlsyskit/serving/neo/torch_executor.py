"""The real NEO executor: host-CPU decode attention and asymmetric two-sub-batch pipelining.

For each request on the host (``plan.on_host``), every layer sends only the new token's q/k/v
to the host pool's :class:`~mlsyskit.serving.model.PagedKVCache`, where the host appends k/v and
attends; the output comes back. The KV history never crosses the boundary.

In pipelined mode the layer loop is shifted by half a layer (notes §1.3)::

    preproj(b0,0); host-attn(b0,0) || [preproj(b1,0); device-attn(b0,0)]
    for each layer i:
      stage 0: host-attn(b1,i)   || postproj(b0,i) -> preproj(b0,i+1)
      stage 1: host-attn(b0,i+1) || postproj(b1,i) -> preproj(b1,i+1); device-attn(b0,i+1)

"host-attn" runs on a dedicated host thread (on CUDA the device part would also be on its own
stream); here both run on this machine's CPU, with the "device" and "host" pools kept apart.
The arithmetic of every token is the same in both modes, so logits match the sequential run up
to floating-point reassociation in batched GEMMs.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch
from torch import Tensor

from mlsyskit.serving.errors import ServingError
from mlsyskit.serving.executor.torch_executor import TorchExecutor
from mlsyskit.serving.model import SequenceBatch
from mlsyskit.serving.model.layers import DecoderLayer
from mlsyskit.serving.neo.plan import ExecMode, NeoStepPlan
from mlsyskit.serving.plan import StepPlan, StepResult


@dataclass(frozen=True)
class _Part:
    """One sub-batch: its sequences, where their attention runs, and token indices."""

    batch: SequenceBatch  # the sub-batch (its tokens are contiguous in sub-batch order)
    plan_index: list[int]  # plan positions of its sequences
    main: list[tuple[SequenceBatch, Tensor, bool]]  # (sequences, token idx, in host pool)
    host: tuple[SequenceBatch, Tensor] | None  # host decodes: attended on the host thread


@dataclass
class OverlapTimes:
    """Seconds spent by the host thread and the whole forward in pipelined steps."""

    host_busy_s: float = 0.0
    forward_s: float = 0.0
    num_pipelined_steps: int = 0


class RecordingTorchExecutor(TorchExecutor):
    """A :class:`TorchExecutor` that can keep each sampled token's logits (for parity checks)."""

    record_logits: bool = False

    def recorded(self) -> dict[str, list[Tensor]]:
        return self.__dict__.setdefault("_recorded", {})

    def _sample(self, plan: StepPlan, logits: torch.Tensor) -> list[int]:
        if self.record_logits:
            store = self.recorded()
            for idx, req in enumerate(plan.requests):
                if plan.samples(idx):
                    store.setdefault(req.request_id, []).append(logits[idx].detach().clone())
        return super()._sample(plan, logits)


class NeoTorchExecutor(RecordingTorchExecutor):
    """Runs NEO plans for real; plain plans go through :class:`TorchExecutor` unchanged."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        if self.host_cache is None:
            raise ServingError("NEO needs a host pool (num_host_blocks > 0)")
        self._host_thread = ThreadPoolExecutor(1, thread_name_prefix="neo-host-attention")
        self.overlap = OverlapTimes()

    def close(self) -> None:
        """Stop the host thread."""
        self._host_thread.shutdown(wait=True)

    def execute(self, plan: StepPlan) -> StepResult:
        if not isinstance(plan, NeoStepPlan) or not any(plan.on_host):
            return super().execute(plan)
        if plan.hidden_layers:
            raise ServingError("NEO plans do not return hidden states")
        started = time.perf_counter()
        assert self.host_cache is not None
        if plan.swap_out:
            self.device_cache.copy_blocks_to(self.host_cache, plan.swap_out)
        if plan.swap_in:
            self.host_cache.copy_blocks_to(self.device_cache, plan.swap_in)
        batch = self._batch(plan)
        parts = [self._part(plan, batch, sb) for sb in (0, 1)]
        with torch.no_grad():
            if plan.mode is ExecMode.PIPELINED and all(p.plan_index for p in parts):
                outs = self._pipelined(parts)
                pairs = list(zip(parts, outs, strict=True))
            else:
                whole = self._part(plan, batch, None)
                pairs = [(whole, self._sequential(whole))]
        logits = torch.empty(len(plan.requests), self.model.config.vocab_size)
        for part, out in pairs:
            logits[torch.tensor(part.plan_index, dtype=torch.long)] = out.float().cpu()
        sampled = self._sample(plan, logits)
        return StepResult(plan.step_id, sampled, time.perf_counter() - started)

    # --- building the parts --------------------------------------------------------------
    @staticmethod
    def _batch(plan: StepPlan) -> SequenceBatch:
        token_ids: list[int] = []
        positions: list[int] = []
        for req, n, ctx in zip(plan.requests, plan.num_new_tokens, plan.context_lens,
                               strict=True):
            if req.token_ids is None:
                raise ServingError(f"request {req.request_id} has no token ids")
            token_ids.extend(req.token_ids[ctx - n:ctx])
            positions.extend(range(ctx - n, ctx))
        return SequenceBatch(
            token_ids=torch.tensor(token_ids, dtype=torch.long),
            positions=torch.tensor(positions, dtype=torch.long),
            query_lens=list(plan.num_new_tokens),
            context_lens=list(plan.context_lens),
            block_tables=[list(t) for t in plan.block_tables],
        )

    @staticmethod
    def _part(plan: NeoStepPlan, batch: SequenceBatch, sub_batch: int | None) -> _Part:
        """Sequences of ``sub_batch`` (all of them for ``None``) split by where they attend."""
        idx = [i for i in range(len(plan.requests))
               if sub_batch is None or plan.sub_batch[i] == sub_batch]
        sub, _ = batch.select(idx)
        dev, host_pre, host_dec = [], [], []
        for j, i in enumerate(idx):
            if not plan.on_host[i]:
                dev.append(j)
            elif plan.num_new_tokens[i] == 1 and plan.context_lens[i] > 1:
                host_dec.append(j)
            else:
                host_pre.append(j)  # a host-destined prefill: computed by the device
        main = [(*sub.select(g), on_host) for g, on_host in ((dev, False), (host_pre, True)) if g]
        host = sub.select(host_dec) if host_dec else None
        return _Part(sub, idx, main, host)

    # --- attention -----------------------------------------------------------------------
    def _attend_main(self, layer: DecoderLayer, part: _Part, qkv: tuple[Tensor, ...],
                     out: Tensor) -> None:
        q, k, v = qkv
        for sub, tok, on_host in part.main:
            cache = self.host_cache if on_host else self.device_cache
            assert cache is not None
            out[tok] = layer.attend(q[tok], k[tok], v[tok], sub, cache)

    def _attend_host(self, layer: DecoderLayer, part: _Part,
                     qkv: tuple[Tensor, ...]) -> tuple[Tensor, float]:
        """Host attention of a part's host decodes: only q/k/v of one token per request move."""
        assert part.host is not None and self.host_cache is not None
        t0 = time.perf_counter()
        sub, tok = part.host
        q, k, v = (x[tok].to("cpu") for x in qkv)  # device -> host buffers
        out = layer.attend(q, k, v, sub, self.host_cache)
        return out, time.perf_counter() - t0

    def _submit(self, layer: DecoderLayer, part: _Part,
                qkv: tuple[Tensor, ...]) -> Future[tuple[Tensor, float]] | None:
        if part.host is None:
            return None
        return self._host_thread.submit(self._attend_host, layer, part, qkv)

    def _merge(self, part: _Part, out: Tensor, fut: Future[tuple[Tensor, float]] | None) -> Tensor:
        if fut is not None:
            assert part.host is not None
            host_out, busy = fut.result()
            self.overlap.host_busy_s += busy
            out[part.host[1]] = host_out.to(out.device)
        return out

    # --- layer loops ---------------------------------------------------------------------
    def _layers(self) -> list[DecoderLayer]:
        layers = [m for m in self.model.layers if isinstance(m, DecoderLayer)]
        return layers

    def _sequential(self, part: _Part) -> Tensor:
        """The usual loop, with host decodes attended on the host pool (no overlap)."""
        b = part.batch
        positions = b.positions.to(self.model.device)
        rope = self.model.rope(positions)  # once per step, as PagedLlama.run_layers does
        h = self.model.embed(b.token_ids)
        for layer in self._layers():
            qkv = layer.qkv(h, positions, rope)
            out = torch.empty_like(qkv[0])
            self._attend_main(layer, part, qkv, out)
            out = self._merge(part, out, self._submit(layer, part, qkv))
            h = layer.finish(h, out)
        return self.model.final_logits(h[b.last_token_indices()])

    def _pipelined(self, parts: list[_Part]) -> list[Tensor]:
        """The half-layer-shifted loop over sub-batches b0 and b1 (module docstring)."""
        t_start = time.perf_counter()
        layers = self._layers()
        num = len(layers)
        p0, p1 = parts
        pos0 = p0.batch.positions.to(self.model.device)
        pos1 = p1.batch.positions.to(self.model.device)
        rope0, rope1 = self.model.rope(pos0), self.model.rope(pos1)
        h0 = self.model.embed(p0.batch.token_ids)
        h1 = self.model.embed(p1.batch.token_ids)
        qkv0 = layers[0].qkv(h0, pos0, rope0)
        fut0 = self._submit(layers[0], p0, qkv0)
        qkv1 = layers[0].qkv(h1, pos1, rope1)
        a0 = torch.empty_like(qkv0[0])
        self._attend_main(layers[0], p0, qkv0, a0)
        a0 = self._merge(p0, a0, fut0)
        for i in range(num):
            # stage 0: host attends b1 at layer i while the device finishes b0's layer i
            fut1 = self._submit(layers[i], p1, qkv1)
            h0 = layers[i].finish(h0, a0)
            if i + 1 < num:
                qkv0 = layers[i + 1].qkv(h0, pos0, rope0)
            a1 = torch.empty_like(qkv1[0])
            self._attend_main(layers[i], p1, qkv1, a1)
            a1 = self._merge(p1, a1, fut1)
            # stage 1: host attends b0 at layer i+1 while the device finishes b1's layer i
            fut0 = self._submit(layers[i + 1], p0, qkv0) if i + 1 < num else None
            h1 = layers[i].finish(h1, a1)
            if i + 1 < num:
                qkv1 = layers[i + 1].qkv(h1, pos1, rope1)
                a0 = torch.empty_like(qkv0[0])
                self._attend_main(layers[i + 1], p0, qkv0, a0)
                a0 = self._merge(p0, a0, fut0)
        out0 = self.model.final_logits(h0[p0.batch.last_token_indices()])
        out1 = self.model.final_logits(h1[p1.batch.last_token_indices()])
        self.overlap.forward_s += time.perf_counter() - t_start
        self.overlap.num_pipelined_steps += 1
        return [out0, out1]

