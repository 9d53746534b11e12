"""The real executor: runs :class:`~mlsyskit.serving.model.PagedLlama` on this machine.

It keeps two :class:`~mlsyskit.serving.model.PagedKVCache` pools (device and host; both in CPU
memory here, on a GPU machine the device pool would sit on the GPU), performs the plan's block
copies, builds a :class:`~mlsyskit.serving.model.SequenceBatch` and samples one token per
sequence: greedy by default, or seeded multinomial sampling per request when its temperature > 0.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from mlsyskit.errors import ConfigError
from mlsyskit.serving.errors import ServingError
from mlsyskit.serving.executor.base import Executor
from mlsyskit.serving.plan import StepPlan, StepResult

if TYPE_CHECKING:
    from mlsyskit.serving.model import PagedLlama


class TorchExecutor(Executor):
    """Runs steps with a PyTorch model.

    Parameters
    ----------
    model
        The paged model (its weights define the engine's outputs).
    num_device_blocks, num_host_blocks, block_size
        KV pool sizes (blocks of ``block_size`` tokens).
    device
        Where the device pool and the model live ("cpu" here; "cuda" on a GPU machine).
    eos_token_id
        The tokenizer's end-of-sequence id.
    """

    def __init__(
        self,
        model: PagedLlama,
        *,
        num_device_blocks: int,
        num_host_blocks: int,
        block_size: int = 16,
        device: str = "cpu",
        eos_token_id: int | None = None,
    ) -> None:
        from mlsyskit.serving.model import PagedKVCache

        self.model = model
        self.num_device_blocks = num_device_blocks
        self.num_host_blocks = num_host_blocks
        self.block_size = block_size
        self.eos_token_id = eos_token_id
        dtype = next(model.parameters()).dtype
        self.device_cache = PagedKVCache(
            model.config, num_device_blocks, block_size, device=device, dtype=dtype
        )
        self.host_cache = (
            PagedKVCache(model.config, num_host_blocks, block_size, device="cpu", dtype=dtype)
            if num_host_blocks > 0
            else None
        )
        self._generators: dict[str, torch.Generator] = {}
        self.device = torch.device(device)

    @classmethod
    def from_name(
        cls,
        model: str,
        *,
        checkpoint: Path | None = None,
        num_device_blocks: int = 256,
        num_host_blocks: int = 256,
        block_size: int = 16,
        seed: int = 0,
        device: str = "cpu",
        max_weight_gib: float = 4.0,
    ) -> TorchExecutor:
        """A model preset with random weights from ``seed``, or a local HF checkpoint.

        Raises
        ------
        ConfigError
            If the preset's float32 weights exceed ``max_weight_gib`` (paper-scale shapes are
            for the simulator: building them here would exhaust memory).
        """
        from mlsyskit.serving.model import PagedLlama, get_model_config, load_tokenizer

        if checkpoint is None:
            gib = get_model_config(model).num_params * 4 / 1024**3
            if gib > max_weight_gib:
                raise ConfigError(
                    f"model {model!r} needs {gib:.1f} GiB of float32 weights, more than "
                    f"max_weight_gib={max_weight_gib}: use the simulated executor for it"
                )
        if checkpoint is not None:
            net = PagedLlama.from_pretrained(checkpoint)
            tokenizer = load_tokenizer(checkpoint)
        else:
            net = PagedLlama(get_model_config(model), seed=seed)
            tokenizer = load_tokenizer(None)
        net.to(device)
        return cls(
            net,
            num_device_blocks=num_device_blocks,
            num_host_blocks=num_host_blocks,
            block_size=block_size,
            device=device,
            eos_token_id=tokenizer.eos_token_id,
        )

    def execute(self, plan: StepPlan) -> StepResult:
        from mlsyskit.serving.model import SequenceBatch

        started = time.perf_counter()
        if plan.swap_out:
            assert self.host_cache is not None
            self.device_cache.copy_blocks_to(self.host_cache, plan.swap_out)
        if plan.swap_in:
            assert self.host_cache is not None
            self.host_cache.copy_blocks_to(self.device_cache, plan.swap_in)
        if not plan.requests:
            return StepResult(plan.step_id, [], time.perf_counter() - started)
        token_ids: list[int] = []
        positions: list[int] = []
        for req, n, ctx in zip(plan.requests, plan.num_new_tokens, plan.context_lens,
                               strict=True):
            ids = req.token_ids
            if ids is None:
                raise ServingError(
                    f"request {req.request_id} has no token ids: give prompt_token_ids to a "
                    "real executor"
                )
            start = ctx - n
            token_ids.extend(ids[start:ctx])
            positions.extend(range(start, ctx))
        batch = SequenceBatch(
            token_ids=torch.tensor(token_ids, dtype=torch.long),
            positions=torch.tensor(positions, dtype=torch.long),
            query_lens=list(plan.num_new_tokens),
            context_lens=list(plan.context_lens),
            block_tables=[list(t) for t in plan.block_tables],
        )
        out = self.model(batch, self.device_cache, plan.hidden_layers)
        sampled = self._sample(plan, out.logits)
        hidden = {layer: h.detach().cpu() for layer, h in out.hidden.items()}
        return StepResult(plan.step_id, sampled, time.perf_counter() - started, hidden)

    def _sample(self, plan: StepPlan, logits: torch.Tensor) -> list[int]:
        greedy: list[int] = logits.argmax(dim=-1).tolist()
        for idx, req in enumerate(plan.requests):
            temperature = req.sampling.temperature
            if temperature <= 0 or not plan.samples(idx):
                continue
            gen = self._generators.get(req.request_id)
            if gen is None:
                gen = self._generators[req.request_id] = torch.Generator().manual_seed(
                    req.sampling.seed
                )
            probs = torch.softmax(logits[idx].float() / temperature, dim=-1).cpu()
            greedy[idx] = int(torch.multinomial(probs, 1, generator=gen).item())
        return greedy

    def release(self, request_id: str) -> None:
        self._generators.pop(request_id, None)
