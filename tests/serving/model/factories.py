"""Small builders for model tests."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mlsyskit.serving.model import SequenceBatch


def make_batch(
    seqs: Sequence[Sequence[int]],
    starts: Sequence[int],
    tables: Sequence[Sequence[int]],
) -> SequenceBatch:
    """A batch where sequence i brings tokens ``seqs[i]`` starting at position ``starts[i]``."""
    ids = [t for s in seqs for t in s]
    pos = [p for s, st in zip(seqs, starts, strict=True) for p in range(st, st + len(s))]
    return SequenceBatch(
        token_ids=torch.tensor(ids, dtype=torch.long),
        positions=torch.tensor(pos, dtype=torch.long),
        query_lens=[len(s) for s in seqs],
        context_lens=[st + len(s) for s, st in zip(seqs, starts, strict=True)],
        block_tables=[list(t) for t in tables],
    )


def random_tokens(n: int, seed: int, vocab: int = 264) -> list[int]:
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(seed)).tolist()
