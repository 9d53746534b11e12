"""Bubble scheduler (paper Algorithm 2): coarse InitSchedule, then fine kernel-level moves.

Frames of time.  The LLM timeline ``T0`` (LLM alone, released after the DP all-gathers) is
computed once; the final LLM runs at ``T0 + delta`` where ``delta >= 0`` is the delay that
encoder work causes.  Kernels placed by the *fine* step live in bubbles of ``T0`` and are
stored relative to it, so they move with the LLM; *coarse* work (forwards before the LLM,
backwards after it) is stored in absolute time.

* Coarse (InitSchedule): every encoder pipeline runs its forwards as a mini-pipeline from
  step start and its backwards after the LLM; the LLM start is delayed by any overflow and
  by the global ordering check (sorted encoder finish times EF_i <= F_i).
* Fine (OptimizeSchedule): repeatedly take the critical encoder pipeline (its forwards end
  last before the LLM / its backwards end last after it), move one microbatch's forward
  (its last) or backward (its first) kernel by kernel into TP and PP-other bubbles, first
  fit, respecting encoder stage order, F_i / B_i and link use (encoder compute kernels go
  into compute-idle time, encoder collectives into link-idle time), and keep the move if the
  iteration does not get slower.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlsyskit.training.optimus.baselines import (
    llm_only_spec,
    split_even,
    stage_work,
)
from mlsyskit.training.optimus.config import JobConfig
from mlsyskit.training.optimus.costmodel import CostModel, Kernel, Stream
from mlsyskit.training.optimus.gaps import GapList, gaps_from_busy
from mlsyskit.training.optimus.pipeline import (
    PipelineSpec,
    StageWork,
    Timeline,
    latest_fwd_starts,
    simulate,
)
from mlsyskit.training.optimus.planner import EncoderPlan

Placement = tuple[float, float, Stream]  # start, end (T0-relative), stream


@dataclass
class Context:
    """Everything fixed for one (job, encoder plan): the LLM timeline T0, bubbles, costs."""

    job: JobConfig
    plan: EncoderPlan
    llm: PipelineSpec
    t0: Timeline
    enc_stages: tuple[StageWork, ...]
    enc_p2p_s: float
    enc_to_llm_s: float
    ag_enc: tuple[float, ...]
    ag_llm: tuple[float, ...]
    rs_enc: tuple[float, ...]
    rs_llm: tuple[float, ...]
    first: tuple[float, ...]
    last: tuple[float, ...]
    f_dep: tuple[float, ...]
    b_dep: tuple[float, ...]
    llm_end_s: float
    compute_gaps: tuple[GapList, ...]
    link_gaps: tuple[GapList, ...]

    @property
    def num_devices(self) -> int:
        return self.llm.pp

    def stage_compute_s(self, stage: int) -> float:
        w = self.enc_stages[stage]
        return sum(k.duration_s for k in (*w.fwd, *w.bwd) if k.stream is Stream.COMPUTE)


def encoder_stages(job: JobConfig, cm: CostModel, plan: EncoderPlan) -> tuple[StageWork, ...]:
    """Each encoder's layers split into PP_enc stages; stage k of all encoders is one op."""
    per_enc = [
        split_even([(e, False)] * e.spec.num_layers, plan.pp) for e in job.encoders
    ]
    mbs = job.llm_plan.microbatch_size
    return tuple(
        stage_work(cm, [layer for groups in per_enc for layer in groups[k]], mbs, plan.tp)
        for k in range(plan.pp)
    )


def build_context(job: JobConfig, cm: CostModel, plan: EncoderPlan,
                  defer_forwards: bool = False) -> Context:
    """Simulate T0 and extract bubbles and the dependency points F_i, B_i.

    ``defer_forwards``: Optimus's warm-up adjustment; every microbatch's first LLM forward
    starts at its latest start that keeps the LLM-alone iteration end
    (:func:`latest_fwd_starts`), which moves F_i later and opens bubbles on stage 0.
    """
    llm = llm_only_spec(job, cm)
    stages = encoder_stages(job, cm, plan)
    dp_llm, dp_enc = job.llm_plan.dp, plan.dp
    ag_llm = tuple(cm.dp_collective_s(llm.stages[d].params, dp_llm, 2) for d in range(llm.pp))
    rs_llm = tuple(cm.dp_collective_s(llm.stages[d].params, dp_llm, 4) for d in range(llm.pp))
    ag_enc, rs_enc = [0.0] * llm.pp, [0.0] * llm.pp
    for g in range(plan.groups):
        for k in range(plan.pp):
            d = plan.device(g, k)
            ag_enc[d] = cm.dp_collective_s(stages[k].params, dp_enc, 2)
            rs_enc[d] = cm.dp_collective_s(stages[k].params, dp_enc, 4)
    release = [ag_enc[d] + ag_llm[d] for d in range(llm.pp)]
    t0 = simulate(llm, release)
    if defer_forwards:
        t0 = simulate(llm, release, latest_fwd_starts(t0, rs_llm))
    n = llm.num_mb
    compute_gaps, link_gaps = [], []
    for d in range(llm.pp):
        comp_busy: list[tuple[float, float]] = []
        link_busy: list[tuple[float, float]] = []
        for s, e, kern, _ in t0.kernels(d):
            (comp_busy if kern.stream is Stream.COMPUTE else link_busy).append((s, e))
        lo, hi = t0.first_start(d), t0.last_end(d)
        compute_gaps.append(gaps_from_busy(comp_busy, lo, hi))
        link_gaps.append(gaps_from_busy(link_busy, lo, hi))
    # Stage k of every encoder is one op (encoders are separate pipelines sharing devices),
    # so a stage-to-stage hop carries every encoder's own activation, and the hop to LLM
    # stage 0 every encoder's output: one message of their summed bytes.
    mbs = job.llm_plan.microbatch_size
    act = sum(cm.activation_bytes(e.spec, e.seq_len, mbs) for e in job.encoders)
    return Context(
        job=job, plan=plan, llm=llm, t0=t0, enc_stages=stages,
        enc_p2p_s=cm.p2p_s(act / plan.tp), enc_to_llm_s=cm.p2p_s(act / plan.tp),
        ag_enc=tuple(ag_enc), ag_llm=ag_llm, rs_enc=tuple(rs_enc), rs_llm=rs_llm,
        first=tuple(t0.first_start(d) for d in range(llm.pp)),
        last=tuple(t0.last_end(d) for d in range(llm.pp)),
        f_dep=tuple(t0.fwd_dependency(i) for i in range(n)),
        b_dep=tuple(t0.bwd_dependency(i) for i in range(n)),
        llm_end_s=max(t0.last_end(d) + rs_llm[d] for d in range(llm.pp)),
        compute_gaps=tuple(compute_gaps), link_gaps=tuple(link_gaps),
    )


@dataclass
class FineOp:
    """Kernel placements (T0-relative) of one microbatch on every encoder stage."""

    stages: dict[int, list[Placement]]
    end_s: float  # fwd: last stage end + lag to LLM; bwd: stage 0 end


@dataclass
class State:
    """Where every encoder microbatch's forward and backward goes."""

    parts: tuple[int, ...]
    compute_gaps: list[GapList]
    link_gaps: list[GapList]
    fine_fwd: dict[tuple[int, int], FineOp] = field(default_factory=dict)
    fine_bwd: dict[tuple[int, int], FineOp] = field(default_factory=dict)

    def copy_gaps(self) -> None:
        self.compute_gaps = [g.copy() for g in self.compute_gaps]
        self.link_gaps = [g.copy() for g in self.link_gaps]


@dataclass(frozen=True)
class OpTime:
    start: float
    end: float


@dataclass
class Evaluation:
    """Timing of a state: delta, absolute coarse op times, mapping, iteration time."""

    feasible: bool
    delta: float = 0.0
    makespan_s: float = float("inf")
    pre: dict[tuple[int, int, int], OpTime] = field(default_factory=dict)  # (g, mb, stage)
    post: dict[tuple[int, int, int], OpTime] = field(default_factory=dict)
    slot: dict[tuple[int, int], int] = field(default_factory=dict)  # (g, mb) -> rank
    enc_end: tuple[float, ...] = ()
    device_end: tuple[float, ...] = ()


def _min_delta(ctx: Context, ef_abs: list[float], ef_rel: list[float], lo: float) -> float | None:
    """Smallest delta >= lo with sorted EF (each repeated ``columns`` times) <= F_i + delta."""
    cols = ctx.plan.columns
    f = ctx.f_dep

    def ok(delta: float) -> bool:
        vals = sorted([*ef_abs, *(x + delta for x in ef_rel)])
        return all(v <= f[r * cols] + delta + 1e-12 for r, v in enumerate(vals))

    hi = max([lo, *ef_abs]) + max(1.0, ctx.llm_end_s)
    if not ok(hi):
        return None
    if ok(lo):
        return lo
    a, b = lo, hi
    for _ in range(60):
        mid = (a + b) / 2
        if ok(mid):
            b = mid
        else:
            a = mid
    return b


def evaluate(ctx: Context, st: State) -> Evaluation:
    """Time a state: coarse mini-pipelines, the LLM delay, the backward tail."""
    plan, n_dev = ctx.plan, ctx.num_devices
    stages = ctx.enc_stages
    fwd_s = [w.fwd_s for w in stages]
    bwd_s = [w.bwd_s for w in stages]
    pre: dict[tuple[int, int, int], OpTime] = {}
    pre_end = [0.0] * n_dev
    ef_abs: list[float] = []
    ef_rel: list[float] = []
    keys_abs: list[tuple[int, int]] = []
    keys_rel: list[tuple[int, int]] = []
    for g, count in enumerate(st.parts):
        free = [ctx.ag_enc[plan.device(g, k)] for k in range(plan.pp)]
        for mb in range(count):
            if (g, mb) in st.fine_fwd:
                keys_rel.append((g, mb))
                ef_rel.append(st.fine_fwd[(g, mb)].end_s)
                continue
            ready = 0.0
            for k in range(plan.pp):
                s = max(free[k], ready)
                e = s + fwd_s[k]
                pre[(g, mb, k)] = OpTime(s, e)
                free[k] = e
                ready = e + ctx.enc_p2p_s
            keys_abs.append((g, mb))
            ef_abs.append(ready - ctx.enc_p2p_s + ctx.enc_to_llm_s)
        for k in range(plan.pp):
            pre_end[plan.device(g, k)] = free[k]
    lo = max([0.0, *(pre_end[d] - ctx.first[d] for d in range(n_dev))])
    delta = _min_delta(ctx, ef_abs, ef_rel, lo)
    if delta is None:
        return Evaluation(False)
    order = sorted(
        [(v, key) for v, key in zip(ef_abs, keys_abs, strict=True)]
        + [(v + delta, key) for v, key in zip(ef_rel, keys_rel, strict=True)]
    )
    slot = {key: r for r, (_, key) in enumerate(order)}
    cols = plan.columns
    post: dict[tuple[int, int, int], OpTime] = {}
    enc_end = [0.0] * n_dev
    for (g, _mb), op in st.fine_bwd.items():
        for k, pl in op.stages.items():
            d = plan.device(g, k)
            enc_end[d] = max(enc_end[d], pl[-1][1] + delta)
    for g, count in enumerate(st.parts):
        free = [ctx.last[plan.device(g, k)] + delta for k in range(plan.pp)]
        todo = sorted(
            (ctx.b_dep[slot[(g, mb)] * cols + cols - 1] + delta + ctx.enc_to_llm_s, mb)
            for mb in range(count) if (g, mb) not in st.fine_bwd
        )
        for release, mb in todo:
            ready = release
            for k in reversed(range(plan.pp)):
                s = max(free[k], ready)
                e = s + bwd_s[k]
                post[(g, mb, k)] = OpTime(s, e)
                free[k] = e
                ready = e + ctx.enc_p2p_s
        for k in range(plan.pp):
            d = plan.device(g, k)
            enc_end[d] = max(enc_end[d], free[k])
    device_end = []
    for d in range(n_dev):
        rs_end = ctx.last[d] + delta + ctx.rs_llm[d]
        device_end.append(max(rs_end, enc_end[d]) + ctx.rs_enc[d])
    return Evaluation(True, delta, max(device_end), pre, post, slot, tuple(enc_end),
                      tuple(device_end))


def serial_evaluation(ctx: Context, parts: tuple[int, ...]) -> Evaluation:
    """The serial encoder-then-LLM baseline as an :class:`Evaluation` of the coarse state.

    All encoder forwards (the coarse mini-pipelines), a barrier, the LLM at ``T0 + delta``,
    a barrier, all encoder backwards; each device reduce-scatters its LLM gradients after
    its own last LLM op and its encoder gradients after that and its last encoder backward.
    Built with ``optimus_schedule(..., barrier=True)`` it is a real schedule the replay
    re-executes; on the same context it is never faster than the coarse schedule.
    """
    st = initial_state(ctx, parts)
    ev = evaluate(ctx, st)
    plan, n_dev = ctx.plan, ctx.num_devices
    last_stage = plan.pp - 1
    barrier = max(
        t.end + (ctx.enc_to_llm_s if k == last_stage else 0.0)
        for (_g, _mb, k), t in ev.pre.items()
    )
    delta = max(0.0, barrier - min(ctx.first))
    llm_done = max(ctx.last) + delta
    bwd = [w.bwd_s for w in ctx.enc_stages]
    post: dict[tuple[int, int, int], OpTime] = {}
    enc_end = [ctx.last[d] + delta for d in range(n_dev)]
    for g, count in enumerate(parts):
        free = [llm_done] * plan.pp
        for mb in sorted(range(count), key=lambda m: ev.slot[(g, m)]):
            ready = llm_done + ctx.enc_to_llm_s
            for k in reversed(range(plan.pp)):
                s = max(free[k], ready)
                post[(g, mb, k)] = OpTime(s, s + bwd[k])
                free[k] = s + bwd[k]
                ready = s + bwd[k] + ctx.enc_p2p_s
        for k in range(plan.pp):
            d = plan.device(g, k)
            enc_end[d] = max(enc_end[d], free[k])
    device_end = tuple(
        max(ctx.last[d] + delta + ctx.rs_llm[d], enc_end[d]) + ctx.rs_enc[d]
        for d in range(n_dev)
    )
    return Evaluation(True, delta, max(device_end), ev.pre, post, ev.slot, tuple(enc_end),
                      device_end)


def _place_chain(
    ctx: Context, st: State, device: int, kernels: tuple[Kernel, ...], ready: float,
    deadline: float,
) -> list[Placement] | None:
    """First-fit a kernel chain into the device's bubbles (tentative; nothing committed)."""
    out: list[Placement] = []
    t = ready
    for k in kernels:
        gaps = st.compute_gaps[device] if k.stream is Stream.COMPUTE else st.link_gaps[device]
        s = gaps.find(t, k.duration_s, deadline)
        if s is None:
            return None
        out.append((s, s + k.duration_s, k.stream))
        t = s + k.duration_s
    return out


def _commit(st: State, device: int, placements: list[Placement]) -> None:
    for s, e, stream in placements:
        (st.compute_gaps if stream is Stream.COMPUTE else st.link_gaps)[device].occupy(s, e)


def place_fine_fwd(ctx: Context, st: State, g: int, mb: int) -> FineOp | None:
    """Move microbatch ``mb`` of pipeline ``g``'s forward into bubbles (commits on success)."""
    plan = ctx.plan
    deadline = ctx.f_dep[-1] - ctx.enc_to_llm_s
    ready = 0.0
    done: dict[int, list[Placement]] = {}
    for k in range(plan.pp):
        d = plan.device(g, k)
        pl = _place_chain(ctx, st, d, ctx.enc_stages[k].fwd, max(ready, ctx.first[d]), deadline)
        if pl is None:
            return None
        done[k] = pl
        ready = pl[-1][1] + ctx.enc_p2p_s
    for k, pl in done.items():
        _commit(st, plan.device(g, k), pl)
    return FineOp(done, ready - ctx.enc_p2p_s + ctx.enc_to_llm_s)


def place_fine_bwd(ctx: Context, st: State, g: int, mb: int, release_rel: float) -> FineOp | None:
    """Move the backward of ``(g, mb)`` into bubbles after its LLM gradient is ready."""
    plan = ctx.plan
    ready = release_rel
    done: dict[int, list[Placement]] = {}
    for k in reversed(range(plan.pp)):
        d = plan.device(g, k)
        pl = _place_chain(ctx, st, d, ctx.enc_stages[k].bwd, ready, ctx.last[d])
        if pl is None:
            return None
        done[k] = pl
        ready = pl[-1][1] + ctx.enc_p2p_s
    for k, pl in done.items():
        _commit(st, plan.device(g, k), pl)
    return FineOp(done, ready - ctx.enc_p2p_s)


def initial_state(ctx: Context, parts: tuple[int, ...]) -> State:
    """InitSchedule: all forwards before, all backwards after the LLM."""
    return State(parts, list(ctx.compute_gaps), list(ctx.link_gaps))


def optimize_fwd(ctx: Context, st: State, ev: Evaluation) -> tuple[State, Evaluation]:
    """OptimizeSchedule(FWD): move forwards of the critical pipeline into later bubbles."""
    st.copy_gaps()
    plan = ctx.plan
    while True:
        best_g, best_over = -1, float("-inf")
        for g in range(plan.groups):
            left = [mb for mb in range(st.parts[g]) if (g, mb) not in st.fine_fwd]
            if not left:
                continue
            over = max(ev.pre[(g, left[-1], k)].end - ctx.first[plan.device(g, k)]
                       for k in range(plan.pp))
            if over > best_over:
                best_g, best_over = g, over
        if best_g < 0:
            return st, ev
        mb = max(m for m in range(st.parts[best_g]) if (best_g, m) not in st.fine_fwd)
        saved = [g.copy() for g in st.compute_gaps], [g.copy() for g in st.link_gaps]
        op = place_fine_fwd(ctx, st, best_g, mb)
        if op is None:
            st.compute_gaps, st.link_gaps = saved
            return st, ev
        st.fine_fwd[(best_g, mb)] = op
        new = evaluate(ctx, st)
        if not new.feasible or new.makespan_s > ev.makespan_s + 1e-12:
            del st.fine_fwd[(best_g, mb)]
            st.compute_gaps, st.link_gaps = saved
            return st, ev
        ev = new


def optimize_bwd(ctx: Context, st: State, ev: Evaluation) -> tuple[State, Evaluation]:
    """OptimizeSchedule(BWD): move backwards of the critical pipeline into earlier bubbles."""
    st.copy_gaps()
    plan, cols = ctx.plan, ctx.plan.columns
    while True:
        best_g, best_end = -1, float("-inf")
        for g in range(plan.groups):
            if not any((g, mb) not in st.fine_bwd for mb in range(st.parts[g])):
                continue
            end = max(ev.post[(g, mb, 0)].end for mb in range(st.parts[g])
                      if (g, mb) not in st.fine_bwd)
            if end > best_end:
                best_g, best_end = g, end
        if best_g < 0:
            return st, ev
        g = best_g
        mb = min(
            (m for m in range(st.parts[g]) if (g, m) not in st.fine_bwd),
            key=lambda m: ev.slot[(g, m)],
        )
        release = ctx.b_dep[ev.slot[(g, mb)] * cols + cols - 1] + ctx.enc_to_llm_s
        saved = [x.copy() for x in st.compute_gaps], [x.copy() for x in st.link_gaps]
        op = place_fine_bwd(ctx, st, g, mb, release)
        if op is None:
            st.compute_gaps, st.link_gaps = saved
            return st, ev
        st.fine_bwd[(g, mb)] = op
        new = evaluate(ctx, st)
        if not new.feasible or new.makespan_s > ev.makespan_s + 1e-12:
            del st.fine_bwd[(g, mb)]
            st.compute_gaps, st.link_gaps = saved
            return st, ev
        ev = new
