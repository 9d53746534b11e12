"""Where Megatron-LM puts each rank, and whether a TP, DP or PP group leaves its node.

Megatron-LM's default rank order (``tp-cp-ep-dp-pp``) makes TP the fastest-varying index,
then DP, then PP::

    rank = (p * DP + d) * TP + t,        node = rank // gpus_per_node

so a TP group is a block of TP consecutive ranks (inside one node when TP divides the node
size), the DP group of a stage is strided by TP, and pipeline neighbours are DP * TP ranks
apart.  An encoder plan (PP_enc | PP_llm, TP_enc | TP_llm, see :mod:`.planner`) lives on the
same GPUs: its TP groups are aligned sub-blocks of the LLM's TP groups, encoder stage ``k`` of
pipeline group ``g`` sits on LLM stage ``g * PP_enc + k``.

Why it matters: a ring collective runs at the pace of its slowest link, so a group that
crosses a node boundary is costed over the inter-node network, one that does not over NVLink.
The checks below enumerate the ranks of every group (a few thousand integers, cached), which
stays exact for node sizes that do not divide the group sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from mlsyskit.training.optimus.config import JobConfig


@dataclass(frozen=True)
class Placement:
    """Megatron's rank layout of one LLM plan on nodes of ``gpus_per_node`` GPUs."""

    gpus_per_node: int
    dp: int
    pp: int
    tp: int

    @classmethod
    def for_job(cls, job: JobConfig) -> Placement:
        plan = job.llm_plan
        return cls(job.gpus_per_node, plan.dp, plan.pp, plan.tp)

    @property
    def num_gpus(self) -> int:
        return self.dp * self.pp * self.tp

    def rank(self, stage: int, replica: int, tp_rank: int) -> int:
        """Global rank of LLM stage ``stage``, DP replica ``replica``, TP rank ``tp_rank``."""
        return (stage * self.dp + replica) * self.tp + tp_rank

    def tp_crosses_nodes(self, tp: int) -> bool:
        """Whether some aligned block of ``tp`` consecutive ranks spans two nodes."""
        return _tp_crosses(self.gpus_per_node, self.num_gpus, tp)

    def dp_crosses_nodes(self, dp: int, tp: int | None = None) -> bool:
        """Whether some DP group of size ``dp`` (the LLM's or an encoder plan's) spans nodes.

        With ``tp`` (the model's TP degree) the plan is known: PP = num_gpus / (dp * tp).
        Without it, ``dp == DP_llm`` is the LLM (or an encoder plan with the LLM's PP and TP,
        which has the same groups), exactly; any other ``dp`` is checked under every encoder
        plan (PP_enc, TP_enc) with ``num_gpus / (PP_enc * TP_enc) == dp`` and counts as
        crossing if it does under any of them (the slowest case).  A size that no plan of
        this layout gives falls back to "crosses unless the whole job is one node".
        """
        if dp <= 1:
            return False
        layouts = [
            (pp_x, tp_x) for pp_x in _divisors(self.pp) for tp_x in _divisors(self.tp)
            if self.num_gpus == dp * pp_x * tp_x and tp in (None, tp_x)
        ]
        if not layouts:
            return self.num_gpus > self.gpus_per_node
        return any(
            _dp_crosses(self.gpus_per_node, self.dp, self.pp, self.tp, pp_x, tp_x)
            for pp_x, tp_x in layouts
        )

    def pp_crosses_nodes(self) -> bool:
        """Whether some pipeline hop (stage s to s + 1 of one replica) leaves its node.

        Encoder stages sit on consecutive LLM stages of the same replica, so their hops (and
        the last encoder stage's hop to the LLM) stay inside a node whenever every LLM hop does.
        """
        return _pp_crosses(self.gpus_per_node, self.dp, self.pp, self.tp)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _spans(ranks: list[int], per_node: int) -> bool:
    return len({r // per_node for r in ranks}) > 1


@cache
def _tp_crosses(per_node: int, num_gpus: int, tp: int) -> bool:
    if tp <= 1:
        return False
    return any(
        _spans([b * tp, b * tp + tp - 1], per_node) for b in range(max(1, num_gpus // tp))
    )


@cache
def _dp_crosses(per_node: int, dp: int, pp: int, tp: int, pp_x: int, tp_x: int) -> bool:
    groups, columns = pp // pp_x, tp // tp_x
    for k in range(pp_x):
        for j in range(tp_x):
            members = [
                ((g * pp_x + k) * dp + d) * tp + c * tp_x + j
                for g in range(groups) for d in range(dp) for c in range(columns)
            ]
            if _spans(members, per_node):
                return True
    return False


@cache
def _pp_crosses(per_node: int, dp: int, pp: int, tp: int) -> bool:
    return any(
        _spans([(s * dp + d) * tp + t, ((s + 1) * dp + d) * tp + t], per_node)
        for s in range(pp - 1) for d in range(dp) for t in range(tp)
    )
