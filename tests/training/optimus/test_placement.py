from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mlsyskit.training.optimus.placement import Placement


def test_rank_order_is_tp_then_dp_then_pp() -> None:
    pl = Placement(gpus_per_node=8, dp=2, pp=4, tp=4)
    assert [pl.rank(0, 0, t) for t in range(4)] == [0, 1, 2, 3]
    assert pl.rank(0, 1, 0) == 4 and pl.rank(1, 0, 0) == 8 and pl.rank(3, 1, 3) == 31


def test_group_crossings_by_hand() -> None:
    small = Placement(8, dp=2, pp=4, tp=4)  # a node = one stage's two TP groups
    assert not small.tp_crosses_nodes(4) and not small.dp_crosses_nodes(2)
    assert small.pp_crosses_nodes()
    # encoder DP 4 is DP4 PP4 TP2 (inside a stage: one node) or DP4 PP2 TP4 (two stages
    # apart: two nodes); the TP degree tells them apart, without it the slower one counts
    assert not small.dp_crosses_nodes(4, tp=2) and small.dp_crosses_nodes(4, tp=4)
    assert small.dp_crosses_nodes(4)
    paper = Placement(8, dp=48, pp=8, tp=8)
    assert not paper.tp_crosses_nodes(8) and paper.tp_crosses_nodes(16)
    assert paper.dp_crosses_nodes(48) and paper.dp_crosses_nodes(384) and paper.pp_crosses_nodes()
    assert Placement(4, dp=2, pp=4, tp=8).tp_crosses_nodes(8)
    one_node = Placement(32, dp=2, pp=4, tp=4)
    assert not (one_node.pp_crosses_nodes() or one_node.dp_crosses_nodes(8)
                or one_node.tp_crosses_nodes(4))
    # a node size that divides no group: 6 GPUs, TP2 x PP4: only the hop 2 -> 3 (ranks 4, 5
    # to 6, 7) leaves node 0
    odd = Placement(6, dp=1, pp=4, tp=2)
    assert odd.pp_crosses_nodes() and not odd.tp_crosses_nodes(2)
    assert not Placement(6, dp=1, pp=3, tp=2).pp_crosses_nodes()


@settings(max_examples=60, deadline=None)
@given(per_node=st.integers(1, 20), dp=st.sampled_from([1, 2, 3, 4]),
       pp=st.sampled_from([1, 2, 4]), tp=st.sampled_from([1, 2, 4, 8]))
def test_llm_groups_cross_iff_their_first_and_last_rank_differ_in_node(
    per_node: int, dp: int, pp: int, tp: int,
) -> None:
    pl = Placement(per_node, dp, pp, tp)

    def node(stage: int, replica: int, t: int) -> int:
        return pl.rank(stage, replica, t) // per_node

    # ranks grow along every group, so a group spans nodes iff its ends do
    tp_x = any(node(p, d, 0) != node(p, d, tp - 1) for p in range(pp) for d in range(dp))
    dp_x = any(node(p, 0, t) != node(p, dp - 1, t) for p in range(pp) for t in range(tp))
    pp_x = any(node(p, d, t) != node(p + 1, d, t)
               for p in range(pp - 1) for d in range(dp) for t in range(tp))
    assert pl.tp_crosses_nodes(tp) == tp_x
    assert pl.dp_crosses_nodes(dp) == (dp > 1 and dp_x)
    assert pl.pp_crosses_nodes() == pp_x
    if pl.num_gpus <= per_node:
        assert not (tp_x or dp_x or pp_x)
