"""What one model step computes: ``SequenceBatch`` in, ``ModelOutput`` out.

There is no prefill or decode phase here. Each sequence brings ``query_lens[i]`` new tokens
(a whole prompt, a prefill chunk, or one decode token) and ends the step with
``context_lens[i]`` tokens in the cache; the new tokens are the last ``query_lens[i]`` of them.
Prefills and decodes of different lengths therefore mix freely in one batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from mlsyskit.serving.model.config import ModelError


@dataclass(frozen=True, eq=False)
class SequenceBatch:
    """The new tokens of several sequences for one step, with their paged-cache layout.

    Parameters
    ----------
    token_ids : Tensor
        ``[T]`` long: the new tokens of all sequences concatenated in sequence order.
    positions : Tensor
        ``[T]`` long: absolute position of each new token.
    query_lens : list[int]
        New tokens per sequence (prefill chunk length, or 1 for a decode).
    context_lens : list[int]
        Tokens in the cache after this step per sequence, including the new ones.
    block_tables : list[list[int]]
        Block ids per sequence, covering ``context_lens`` (block ``j`` holds positions
        ``j*block_size ... (j+1)*block_size - 1``).
    """

    token_ids: Tensor
    positions: Tensor
    query_lens: list[int]
    context_lens: list[int]
    block_tables: list[list[int]]
    _memo: dict[object, object] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        num_seqs = len(self.query_lens)
        if len(self.context_lens) != num_seqs or len(self.block_tables) != num_seqs:
            raise ModelError(
                f"SequenceBatch: query_lens ({num_seqs}), context_lens "
                f"({len(self.context_lens)}) and block_tables ({len(self.block_tables)}) "
                "must have one entry per sequence"
            )
        num_tokens = sum(self.query_lens)
        if self.token_ids.shape != (num_tokens,) or self.positions.shape != (num_tokens,):
            raise ModelError(
                f"SequenceBatch: token_ids {tuple(self.token_ids.shape)} and positions "
                f"{tuple(self.positions.shape)} must both be [sum(query_lens)] = [{num_tokens}]"
            )
        for i, (q_len, ctx_len) in enumerate(zip(self.query_lens, self.context_lens, strict=True)):
            if q_len < 1 or ctx_len < q_len:
                raise ModelError(
                    f"SequenceBatch: sequence {i} has query_len {q_len} and context_len "
                    f"{ctx_len}; need 1 <= query_len <= context_len"
                )

    @property
    def num_seqs(self) -> int:
        """Number of sequences."""
        return len(self.query_lens)

    @property
    def num_tokens(self) -> int:
        """Number of new tokens (the step's width)."""
        return int(self.token_ids.shape[0])

    def token_offsets(self) -> list[int]:
        """Start of each sequence's tokens in ``token_ids``, plus the total at the end."""
        offsets = [0]
        for q_len in self.query_lens:
            offsets.append(offsets[-1] + q_len)
        return offsets

    def last_token_indices(self) -> Tensor:
        """``[num_seqs]`` index of each sequence's last new token in ``token_ids``."""
        ends = torch.tensor(self.token_offsets()[1:], dtype=torch.long)
        return (ends - 1).to(self.token_ids.device)

    def select(self, seq_indices: Sequence[int]) -> tuple[SequenceBatch, Tensor]:
        """A sub-batch of some sequences (in the given order) and its token indices.

        This is how an executor splits one step, e.g. NEO sends the attention of some decode
        sequences to the host: ``sub, idx = batch.select([2, 5])`` then
        ``layer.attend(q[idx], k[idx], v[idx], sub, host_cache)``.

        Returns
        -------
        (SequenceBatch, Tensor)
            The sub-batch and a ``[sub.num_tokens]`` long tensor indexing this batch's tokens.
        """
        offsets = self.token_offsets()
        pieces = [torch.arange(offsets[i], offsets[i + 1]) for i in seq_indices]
        index = (torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.long)).to(
            self.token_ids.device
        )
        sub = SequenceBatch(
            token_ids=self.token_ids[index],
            positions=self.positions[index],
            query_lens=[self.query_lens[i] for i in seq_indices],
            context_lens=[self.context_lens[i] for i in seq_indices],
            block_tables=[list(self.block_tables[i]) for i in seq_indices],
        )
        return sub, index


@dataclass(frozen=True, eq=False)
class ModelOutput:
    """What a step returns.

    Parameters
    ----------
    logits : Tensor
        ``[num_seqs, vocab]``: logits of each sequence's last new token.
    hidden : dict[int, Tensor]
        Requested layer index -> ``[num_seqs, hidden_size]`` output of that decoder layer at each
        sequence's last new token (TRAIL's length probe reads these).
    """

    logits: Tensor
    hidden: dict[int, Tensor] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class AttentionGroup:
    """Sequences attended together, padded to the group's longest query and context.

    ``token_index[t]`` picks the group's new tokens out of the batch; ``gather[s, j]`` is the
    flat cache slot of context token ``j`` of the group's sequence ``s`` (padded with slot 0);
    ``mask[s, 0, i, j]`` says whether new token ``i`` of ``s`` may see context token ``j``
    (causal, inside the context); ``query_index[t]`` places token ``t`` in the padded
    ``[num_seqs * max_query]`` query block. Padded query rows see key 0 only so that attention
    stays finite; their outputs are dropped.
    """

    token_index: Tensor
    gather: Tensor
    mask: Tensor
    query_index: Tensor


@dataclass(frozen=True, eq=False)
class PagedLayout:
    """Where a batch lives in a paged cache of one block size (computed once per step).

    ``slots[t]`` is the flat cache slot (``block * block_size + offset``) new token ``t`` is
    written to. Decodes (one new token) and longer queries form separate ``groups`` so that a
    long prefill does not pad every decode to its length.
    """

    slots: Tensor
    groups: tuple[AttentionGroup, ...]


def _group(
    seqs: np.ndarray, ctx: np.ndarray, q_lens: np.ndarray, offsets: np.ndarray,
    tables: np.ndarray, block_size: int,
) -> AttentionGroup:
    """The padded attention layout of sequences ``seqs``.

    The index math runs in NumPy: on arrays this small, a NumPy op costs about a microsecond,
    a PyTorch op ten or more, and this runs once per step.
    """
    g_ctx, g_q, g_off, g_tables = ctx[seqs], q_lens[seqs], offsets[seqs], tables[seqs]
    max_ctx, max_q = int(g_ctx.max()), int(g_q.max())
    key_pos = np.arange(max_ctx)
    key_valid = key_pos[None, :] < g_ctx[:, None]
    gather = g_tables[:, key_pos // block_size] * block_size + key_pos % block_size
    gather = np.where(key_valid, gather, 0)
    q_idx = np.arange(max_q)
    q_valid = q_idx[None, :] < g_q[:, None]
    query_pos = (g_ctx - g_q)[:, None] + q_idx[None, :]
    mask = (key_pos[None, None, :] <= query_pos[:, :, None]) & key_valid[:, None, :]
    mask[:, :, 0] |= ~q_valid  # padded query rows see key 0 only; their outputs are dropped
    rows = np.arange(len(seqs))[:, None]
    return AttentionGroup(
        token_index=torch.from_numpy((g_off[:, None] + q_idx[None, :])[q_valid]),
        gather=torch.from_numpy(gather),
        mask=torch.from_numpy(mask[:, None]),
        query_index=torch.from_numpy((rows * max_q + q_idx[None, :])[q_valid]),
    )


def paged_layout(batch: SequenceBatch, block_size: int, device: torch.device) -> PagedLayout:
    """The ``PagedLayout`` of ``batch`` for ``block_size`` on ``device`` (memoised on the batch).

    Raises
    ------
    ModelError
        If a block table is too short for its sequence's context.
    """
    key = (block_size, str(device))
    cached = batch._memo.get(key)
    if isinstance(cached, PagedLayout):
        return cached
    ctx = np.asarray(batch.context_lens, dtype=np.int64)
    q_lens = np.asarray(batch.query_lens, dtype=np.int64)
    offsets = np.asarray(batch.token_offsets()[:-1], dtype=np.int64)
    needed = (ctx + block_size - 1) // block_size
    have = np.asarray([len(t) for t in batch.block_tables], dtype=np.int64)
    short = np.flatnonzero(have < needed)
    if len(short):
        s = int(short[0])
        raise ModelError(
            f"SequenceBatch: sequence {s} has {batch.context_lens[s]} tokens, needing "
            f"{int(needed[s])} blocks of {block_size}, but its block table has {int(have[s])}"
        )
    width = int(needed.max())
    tables = np.zeros((batch.num_seqs, width), dtype=np.int64)
    for row, table in enumerate(batch.block_tables):
        tables[row, :min(len(table), width)] = table[:width]
    # slot of every new token: its sequence's block for its position, plus the offset in it
    seq_of_token = np.repeat(np.arange(batch.num_seqs), q_lens)
    new_pos = (ctx - q_lens)[seq_of_token] + np.arange(batch.num_tokens) - offsets[seq_of_token]
    slots = tables[seq_of_token, new_pos // block_size] * block_size + new_pos % block_size
    is_decode = q_lens == 1
    groups = tuple(
        _group(seqs, ctx, q_lens, offsets, tables, block_size)
        for seqs in (np.flatnonzero(is_decode), np.flatnonzero(~is_decode))
        if len(seqs)
    )
    layout = PagedLayout(
        slots=torch.from_numpy(slots).to(device),
        groups=tuple(
            AttentionGroup(*(t.to(device) for t in (g.token_index, g.gather, g.mask,
                                                     g.query_index)))
            for g in groups
        ),
    )
    batch._memo[key] = layout
    return layout
