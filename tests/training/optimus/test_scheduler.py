"""Property tests of the bubble scheduler, checked by the independent replay engine.

Every iteration time compared here comes from the replay (which re-executes the task graph
on its own), never from the scheduler's estimate; the estimate is only compared with it.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsyskit.hardware import get_catalogue
from mlsyskit.training.optimus.build import optimus_schedule
from mlsyskit.training.optimus.config import JobConfig, ModelPart, ParallelPlan
from mlsyskit.training.optimus.costmodel import CostModel, Direction
from mlsyskit.training.optimus.models import TransformerSpec
from mlsyskit.training.optimus.replay import ReplayReport, reexecute, replay
from mlsyskit.training.optimus.schedule import Owner, Resource, Schedule
from mlsyskit.training.optimus.scheduler import (
    build_context,
    initial_state,
    serial_evaluation,
)
from mlsyskit.training.optimus.search import (
    Candidate,
    efficiency,
    schedule_candidate,
    search,
    serial_iteration_s,
)

from .conftest import make_job


def _job(pp: int, tp: int, v: int, num_mb: int, encs: list[tuple[int, int, int]],
         llm_hidden: int, llm_layers_per_chunk: int = 2) -> JobConfig:
    """Encoders given as (hidden, layers, seq_len); LLM of ``pp * v * llm_layers_per_chunk``
    layers (H100s, real catalogue numbers)."""
    cat = get_catalogue()
    enc = tuple(ModelPart(TransformerSpec(f"enc{i}", h, n, 4 * h, 8, False), seq)
                for i, (h, n, seq) in enumerate(encs))
    llm = ModelPart(TransformerSpec("llm", llm_hidden, pp * v * llm_layers_per_chunk,
                                    4 * llm_hidden, 8, True), 1024)
    plan = ParallelPlan(dp=2, pp=pp, tp=tp, virtual_stages=v, num_microbatches=num_mb,
                        microbatch_size=1)
    return JobConfig("t", cat.get("h100-sxm"), plan.num_gpus, 8, cat.get("nvlink4"),  # type: ignore[arg-type]
                     cat.get("ib-ndr"), enc, llm, plan, True)  # type: ignore[arg-type]


def _replays(best: Candidate) -> dict[str, tuple[Schedule, ReplayReport]]:
    """Coarse, fine and serial schedules of one candidate, each with its replay."""
    serial = optimus_schedule("serial", best.ctx, initial_state(best.ctx, best.parts),
                              serial_evaluation(best.ctx, best.parts), barrier=True)
    out = {}
    for name, s in (("coarse", optimus_schedule("coarse", best.ctx, best.coarse,
                                                best.coarse_eval)),
                    ("fine", optimus_schedule("fine", best.ctx, best.fine, best.fine_eval)),
                    ("serial", serial)):
        out[name] = (s, replay(s))
    return out


encoder = st.tuples(st.sampled_from([256, 1024, 2048]), st.sampled_from([2, 4, 8]),
                    st.sampled_from([256, 512, 2048]))
jobs = st.builds(
    lambda pp, tp, v, k, encs, llm_hidden, per_chunk: _job(pp, tp, v, pp * k, encs, llm_hidden,
                                                           per_chunk),
    pp=st.sampled_from([2, 4]),
    tp=st.sampled_from([1, 2, 4]),
    v=st.sampled_from([1, 2]),
    k=st.integers(1, 2),
    encs=st.lists(encoder, min_size=1, max_size=2),
    llm_hidden=st.sampled_from([1024, 2048]),
    per_chunk=st.sampled_from([1, 2]),
)


@settings(max_examples=14, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(job=jobs)
def test_schedules_replay_clean_and_are_ordered(job: JobConfig) -> None:
    cm = CostModel.for_job(job)
    best = search(job, cm, fine_top_k=2).best
    reps = _replays(best)
    for name, (sched, rep) in reps.items():
        assert rep.violations == [], name
        # every deliberate delay is a release time or edge: replay == estimate
        assert rep.rel_diff <= 1e-6, name
        # no two tasks share a resource lane of a device, on the replayed clock
        times = reexecute(sched)
        lanes: dict[tuple[int, Resource], list[tuple[float, float]]] = {}
        for t in sched.tasks:
            lanes.setdefault((t.device, t.resource), []).append(times[t.tid])
        for spans in lanes.values():
            spans.sort()
            assert all(b[0] >= a[1] - 1e-12 for a, b in itertools.pairwise(spans))
        n_enc = sum(1 for t in sched.tasks if t.owner is Owner.ENCODER)
        kernels_per_mb = sum(len(w.fwd) + len(w.bwd) for w in best.ctx.enc_stages)
        assert n_enc == kernels_per_mb * sum(best.parts)  # all encoder work, exactly once
    fine_s = reps["fine"][1].replay_makespan_s
    coarse_s = reps["coarse"][1].replay_makespan_s
    serial_s = reps["serial"][1].replay_makespan_s
    assert fine_s <= coarse_s * (1 + 1e-12) and coarse_s <= serial_s * (1 + 1e-12)
    e_c = efficiency(best.ctx, best.coarse, best.coarse_eval)
    e_f = efficiency(best.ctx, best.fine, best.fine_eval)
    # both are shares; fine >= coarse is *not* a property: the fine step keeps any move that
    # does not slow the iteration, and hypothesis found one that hides slightly less encoder
    # work (0.960 vs 0.964 at pp 4, tp 4, v 1). The benchmark reports the order it measures.
    assert 0.0 <= e_c <= 1.0 + 1e-9 and 0.0 <= e_f <= 1.0 + 1e-9


@pytest.mark.parametrize("defer", [False, True])
def test_deferred_forwards_are_release_times_the_replay_keeps(defer: bool) -> None:
    """Reviewer's case (PP4 TP1, 4 microbatches, ViT 2048 x 8 layers x 2048 tokens, LLM
    1024 x 8 layers): the deferred-forward timeline used to replay 1.8 % faster than the
    scheduler claimed, because the delays were not in the task graph."""
    job = _job(4, 1, 1, 4, [(2048, 8, 2048)], 1024)
    cm = CostModel.for_job(job)
    best = search(job, cm, fine_top_k=1).best
    ctx = build_context(job, cm, best.plan, defer_forwards=defer)
    cand = schedule_candidate(ctx, best.parts)
    for state, ev in ((cand.coarse, cand.coarse_eval), (cand.fine, cand.fine_eval)):
        s = optimus_schedule("x", ctx, state, ev)
        rep = replay(s)
        assert rep.violations == []
        assert rep.replay_makespan_s == pytest.approx(ev.makespan_s, rel=1e-9)
        times = reexecute(s)
        # the replay runs every task exactly when the schedule says, not earlier
        assert all(times[t.tid][0] == pytest.approx(t.start_s, abs=1e-9)
                   for t in s.tasks if t.owner is Owner.LLM)
    if defer:
        assert ctx.t0.mb_release is not None
        fwd0 = {t.mb: t for t in optimus_schedule("x", ctx, cand.fine, cand.fine_eval).tasks
                if t.owner is Owner.LLM and t.stage == 0 and t.direction is Direction.FWD
                and t.index == 0}
        for mb, at in enumerate(ctx.t0.mb_release):
            assert fwd0[mb].release_s == pytest.approx(at + cand.fine_eval.delta)


def test_serial_baseline_is_a_replayed_schedule_with_barriers() -> None:
    job = make_job(pp=4, tp=2, virtual=1, num_mb=8, enc_layers=8, enc_hidden=1024)
    best = search(job, CostModel.for_job(job), fine_top_k=1).best
    sched, rep = _replays(best)["serial"]
    assert rep.violations == []
    assert rep.replay_makespan_s == pytest.approx(serial_iteration_s(best.ctx, best.parts),
                                                  rel=1e-12)
    times = reexecute(sched)
    llm = [times[t.tid] for t in sched.tasks if t.owner is Owner.LLM]
    enc_f = [times[t.tid] for t in sched.tasks
             if t.owner is Owner.ENCODER and t.direction is Direction.FWD]
    enc_b = [times[t.tid] for t in sched.tasks
             if t.owner is Owner.ENCODER and t.direction is Direction.BWD]
    assert max(e for _, e in enc_f) <= min(s for s, _ in llm) + 1e-12
    assert max(e for _, e in llm) <= min(s for s, _ in enc_b) + 1e-12


def test_fine_step_fills_tp_bubbles_with_encoder_compute() -> None:
    job = make_job(pp=4, tp=4, virtual=2, num_mb=8, enc_layers=8, enc_hidden=1024)
    cm = CostModel.for_job(job)
    best = search(job, cm, fine_top_k=3).best
    assert best.fine.fine_fwd or best.fine.fine_bwd
    sched = optimus_schedule("fine", best.ctx, best.fine, best.fine_eval)
    times = reexecute(sched)
    # TP bubbles: LLM collective intervals during which the device's LLM compute is idle
    bubbles: list[tuple[int, float, float]] = []
    for d in range(sched.num_devices):
        comp = sorted(times[t.tid] for t in sched.tasks
                      if t.owner is Owner.LLM and t.resource is Resource.COMPUTE and t.device == d)
        for t in sched.tasks:
            if t.owner is Owner.LLM and t.resource is Resource.LINK and t.device == d:
                s, e = times[t.tid]
                if not any(a < e - 1e-12 and b > s + 1e-12 for a, b in comp):
                    bubbles.append((d, s, e))
    assert bubbles
    fine_ops = {(g, mb, Direction.FWD) for g, mb in best.fine.fine_fwd}
    fine_ops |= {(g, mb, Direction.BWD) for g, mb in best.fine.fine_bwd}
    inside = [t for t in sched.tasks
              if t.owner is Owner.ENCODER and t.resource is Resource.COMPUTE
              and (t.pipeline, t.mb, t.direction) in fine_ops
              and any(d == t.device and s - 1e-12 <= times[t.tid][0]
                      and times[t.tid][1] <= e + 1e-12 for d, s, e in bubbles)]
    assert inside  # a fine-placed encoder kernel runs while the LLM waits on a TP collective


def test_global_ordering_feeds_llm_microbatches_in_finish_order() -> None:
    job = make_job(pp=4, tp=2, virtual=1, num_mb=8, enc_layers=4)
    cm = CostModel.for_job(job)
    best = search(job, cm, fine_top_k=1).best
    sched = optimus_schedule("fine", best.ctx, best.fine, best.fine_eval)
    times = reexecute(sched)
    last = best.ctx.plan.pp - 1
    finish: dict[tuple[int, int], float] = {}
    for t in sched.tasks:
        if t.owner is Owner.ENCODER and t.direction is Direction.FWD and t.stage == last:
            key = (t.pipeline, t.mb)
            finish[key] = max(finish.get(key, 0.0), times[t.tid][1])
    order = [key for _, key in sorted((e, key) for key, e in finish.items())]
    assert len(order) == sum(best.parts) and len(set(finish.values())) == len(order)
    assert order != sorted(order)  # fine-moved forwards finish out of microbatch order
    # which LLM microbatches each encoder microbatch feeds, from the task graph's edges
    fed: dict[tuple[int, int], set[int]] = {key: set() for key in finish}
    for dep in sched.deps:
        a, b = sched.tasks[dep.before], sched.tasks[dep.after]
        if (a.owner is Owner.ENCODER and a.direction is Direction.FWD and a.stage == last
                and b.owner is Owner.LLM and b.stage == 0 and b.direction is Direction.FWD):
            fed[(a.pipeline, a.mb)].add(b.mb)
    cols = best.ctx.plan.columns
    for i, key in enumerate(order):
        assert fed[key] == set(range(i * cols, (i + 1) * cols))
        assert best.fine_eval.slot[key] == i


def test_more_microbatches_lower_coarse_efficiency() -> None:
    """Coarse filling only uses the warm-up and cool-down bubbles, which barely grow with the
    microbatch count while the encoder work grows linearly."""
    effs = []
    for num_mb in (4, 8, 16):
        job = make_job(pp=4, tp=2, virtual=1, num_mb=num_mb, enc_layers=8, enc_hidden=1024)
        best = search(job, CostModel.for_job(job), fine_top_k=1).best
        effs.append(efficiency(best.ctx, best.coarse, best.coarse_eval))
    assert 0.0 < effs[2] < effs[1] < effs[0] <= 1.0


def test_two_encoders_send_both_activations_between_stages() -> None:
    """Each encoder's stage-to-stage hop carries its own activation (ViT-22B-like and
    ViT-5B-like widths), so the hop costs the sum, not just the last encoder's."""
    job = _job(4, 2, 1, 8, [(4096, 8, 1024), (1024, 4, 256)], 1024)
    cm = CostModel.for_job(job)
    ctx = build_context(job, cm, search(job, cm, fine_top_k=1).best.plan)
    sizes = [cm.activation_bytes(e.spec, e.seq_len, 1) for e in job.encoders]
    assert sizes == [4096 * 1024 * 2, 1024 * 256 * 2]
    tp = ctx.plan.tp
    assert ctx.enc_p2p_s == pytest.approx(cm.p2p_s((sizes[0] + sizes[1]) / tp))
    assert ctx.enc_to_llm_s == pytest.approx(cm.p2p_s((sizes[0] + sizes[1]) / tp))
    assert ctx.enc_p2p_s > cm.p2p_s(sizes[1] / tp)
