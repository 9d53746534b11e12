"""NEO's scheduler rules, by hand-made cases and by property tests over random workloads."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mlsyskit.errors import ConfigError
from mlsyskit.serving.errors import RequestTooLargeError
from mlsyskit.serving.neo.plan import ExecMode, ModeRule, NeoStepPlan
from mlsyskit.serving.neo.scheduler import NeoConfig, NeoScheduler, OffloadMode
from mlsyskit.serving.request import make_request

from .fakes import create_neo_scheduler, fake_result

#: the rules these placement tests were written for: the throughput mode choice, no steady
#: admission (the tests of the latency-aware additions come after)
THROUGHPUT_RULES = NeoConfig(steady_admission=False, mode_rule=ModeRule.THROUGHPUT)


def _add(s: NeoScheduler, lengths: list[tuple[int, int]]) -> None:
    for i, (p, o) in enumerate(lengths):
        s.add(make_request(f"r{i}", p, o, arrival_time=float(i)), float(i))


def _step(s: NeoScheduler, now: float = 0.0) -> NeoStepPlan:
    plan = s.schedule(now)
    assert isinstance(plan, NeoStepPlan)
    s.update(plan, fake_result(plan), now)
    s.bm.check_invariants()
    return plan


def test_first_prefill_on_device_later_ones_on_host() -> None:
    # 8 device blocks of 4 tokens: r0 (12 + 1 tokens -> 4 blocks) fits, r1 (20 -> 6) does not,
    # so r1 goes to the host and r2, though it would fit, follows it (FCFS fairness)
    s = create_neo_scheduler(num_device_blocks=8, neo=THROUGHPUT_RULES)
    _add(s, [(12, 5), (20, 5), (4, 5)])
    plan = _step(s)
    placement = {r.request_id: h for r, h in zip(plan.requests, plan.on_host, strict=True)}
    assert placement == {"r0": False, "r1": True, "r2": True}
    assert [r.request_id for r in s.gpu_q] == ["r0"]
    assert [r.request_id for r in s.cpu_q] == ["r1", "r2"]


def test_host_decodes_are_limited_by_slack() -> None:
    # FakeCosts: linr = 1 s, host 0.1 s per request -> remains[j] = 1 - 0.1 x n_j, so at most
    # 10 host decodes per sub-batch (all contexts equal, so one rejection ends the walk)
    s = create_neo_scheduler(num_device_blocks=16, max_num_seqs=64,
                             neo=NeoConfig(backlog_guard=False, steady_admission=False,
                                           mode_rule=ModeRule.THROUGHPUT))
    _add(s, [(8, 50)] * 31)
    for _ in range(10):
        _step(s)
        if s.num_waiting == 0:
            break
    assert s.num_waiting == 0 and len(s.cpu_q) > 20
    plan = _step(s)
    assert plan.mode is ExecMode.PIPELINED
    assert all(n == 1 for n in plan.num_new_tokens)
    in_b0 = sum(1 for h, sb in zip(plan.on_host, plan.sub_batch, strict=True) if h and sb == 0)
    in_b1 = sum(1 for h, sb in zip(plan.on_host, plan.sub_batch, strict=True) if h and sb == 1)
    assert (in_b0, in_b1) == (10, 10)
    assert all(plan.on_host[i] for i, sb in enumerate(plan.sub_batch) if sb == 1)


def test_sequential_when_pipelining_does_not_pay() -> None:
    # 3 device decodes and one host decode: sequential 3 req / 1 s beats pipelined 4 / 2 s
    s = create_neo_scheduler(num_device_blocks=12,
                             neo=NeoConfig(backlog_guard=False, steady_admission=False))
    _add(s, [(4, 20), (4, 20), (4, 20), (26, 20)])
    first = _step(s)
    assert sum(first.on_host) == 1  # r3 (27 tokens, 7 blocks) did not fit the device
    plan = _step(s)
    assert plan.mode is ExecMode.SEQUENTIAL
    assert not any(plan.on_host)
    assert len(plan.requests) == 3


def test_newest_device_decode_swaps_out_to_the_front_of_the_host_queue() -> None:
    # two requests take 6 of 7 device blocks after prefill (under the 95% watermark);
    # growing to 13 tokens needs 4 blocks each: 8 > 7
    s = create_neo_scheduler(num_device_blocks=7, block_size=4)
    _add(s, [(11, 10), (11, 10)])
    _step(s)
    assert [r.request_id for r in s.gpu_q] == ["r0", "r1"]
    assert not _step(s).swap_out  # decode to 12 tokens: still 3 blocks each
    plan = _step(s)  # decode to 13 tokens: 4 blocks each, over the pool
    assert plan.swap_out and not plan.swap_in
    assert [r.request_id for r in s.gpu_q] == ["r0"]
    assert [r.request_id for r in s.cpu_q] == ["r1"]
    assert s.bm.on_host("r1")


def test_fastdecode_puts_every_decode_on_the_host() -> None:
    s = create_neo_scheduler(num_device_blocks=64, offload=OffloadMode.FASTDECODE)
    _add(s, [(4, 6)] * 4)
    first = _step(s)
    assert all(first.on_host)  # prefills go to the host pool too
    plan = _step(s)
    assert plan.mode is ExecMode.PIPELINED
    assert all(plan.on_host) and set(plan.sub_batch) == {0, 1}


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.tuples(st.integers(1, 40), st.integers(1, 12)), min_size=1, max_size=14),
    num_device_blocks=st.integers(8, 24),
    num_host_blocks=st.integers(12, 80),
    max_num_seqs=st.integers(1, 10),
    offload=st.sampled_from([OffloadMode.NEO, OffloadMode.FASTDECODE, OffloadMode.FIXED_RATIO]),
    guard=st.booleans(),
    steady=st.booleans(),
    rule=st.sampled_from(list(ModeRule)),
    watermark=st.sampled_from([0.0, 0.1]),
    slo=st.sampled_from([None, 1.5, 3.0]),
)
def test_no_request_lost_or_duplicated_and_pools_never_overflow(
    lengths: list[tuple[int, int]], num_device_blocks: int, num_host_blocks: int,
    max_num_seqs: int, offload: OffloadMode, guard: bool, steady: bool, rule: ModeRule,
    watermark: float, slo: float | None,
) -> None:
    if offload is OffloadMode.FASTDECODE:  # every request must fit the host pool there
        num_host_blocks = max(num_host_blocks, 13)
    # the engine refuses requests that could never fit the device pool; near that size they
    # exceed the device's admission limit and must start on the host
    lengths = [(p, o) for p, o in lengths if (p + o + 3) // 4 <= num_device_blocks]
    assume(lengths)
    neo = NeoConfig(offload=offload, backlog_guard=guard, steady_admission=steady,
                    mode_rule=rule, step_slo_s=slo if offload is OffloadMode.NEO else None)
    s = create_neo_scheduler(num_device_blocks=num_device_blocks,
                             num_host_blocks=num_host_blocks, block_size=4,
                             max_num_seqs=max_num_seqs, max_num_batched_tokens=64,
                             neo=neo, watermark=watermark)
    _add(s, lengths)
    generated = {f"r{i}": 0 for i in range(len(lengths))}
    finished: list[str] = []
    for step in range(3000):
        if not s.has_unfinished():
            break
        plan = s.schedule(float(step))
        assert isinstance(plan, NeoStepPlan)
        ids = [r.request_id for r in plan.requests]
        assert len(ids) == len(set(ids))  # nobody twice in a step
        assert len(ids) <= max_num_seqs
        assert plan.num_batched_tokens <= 64
        for i, req in enumerate(plan.requests):
            table = plan.block_tables[i]
            pool_tables = s.bm.host_blocks_of if plan.on_host[i] else s.bm.device_blocks_of
            assert table == pool_tables(req.request_id)  # the table of the pool it is in
            assert len(table) * 4 >= plan.context_lens[i]
            if plan.sub_batch[i] == 1:
                assert plan.on_host[i] and plan.num_new_tokens[i] == 1
        assert s.bm.device.num_used <= num_device_blocks
        assert s.bm.host.num_used <= num_host_blocks
        for req in plan.requests:
            if plan.samples(plan.requests.index(req)):
                generated[req.request_id] += 1
        for req in s.update(plan, fake_result(plan), float(step)):
            finished.append(req.request_id)
        s.bm.check_invariants()
        assert len(s.running) == len(set(map(id, s.running)))
    assert sorted(finished) == sorted(generated)  # every request finished exactly once
    assert s.bm.device.num_used == 0 and s.bm.host.num_used == 0
    for i, (_p, o) in enumerate(lengths):
        # a recompute after a host-full discard regenerates nothing twice: output length is o
        assert generated[f"r{i}"] >= o


def test_fastdecode_rejects_a_request_larger_than_the_host_pool() -> None:
    s = create_neo_scheduler(num_device_blocks=16, num_host_blocks=12,
                             offload=OffloadMode.FASTDECODE)
    with pytest.raises(RequestTooLargeError, match="host pool has 12"):
        _add(s, [(38, 12)])  # 50 tokens = 13 blocks of 4


def test_neo_keeps_a_request_larger_than_the_host_pool_on_the_device() -> None:
    s = create_neo_scheduler(num_device_blocks=16, num_host_blocks=12)
    _add(s, [(4, 4), (38, 12)])  # r1 cannot finish on the host, so it waits for the device
    plan = _step(s)
    assert [r.request_id for r in plan.requests] == ["r0", "r1"]
    assert plan.on_host == (False, False)


# --- the latency-aware additions: steady admission, power mode rule, device fill -----------


@pytest.mark.parametrize(
    ("num_host", "rule", "admitted"),
    [
        # FakeCosts: linr 1 s per sub-batch, host 0.1 s per request. The next decode-only step
        # has r0 on the device (n_g = 1, t_g = 1 s) and the new requests on the host: the slack
        # walk puts them in b1 then b0, so pipelined serves 1 + k requests in 2 s.
        (3, ModeRule.THROUGHPUT, True),  # 4 / 2 = 2 req/s > 1 / 1
        (3, ModeRule.POWER, False),  # 4 / 2^2 = 1 = 1 / 1^2: not better, they wait
        (4, ModeRule.POWER, True),  # 5 / 4 = 1.25 > 1
        (1, ModeRule.THROUGHPUT, False),  # 2 / 2 = 1: not better
    ],
)
def test_steady_admission_lets_a_prefill_onto_the_host_only_if_it_will_be_decoded(
    num_host: int, rule: ModeRule, admitted: bool
) -> None:
    # 5 device blocks of 4: r0 (12 + 1 tokens, 4 blocks) fits; every later one (8 + 1 tokens,
    # 3 blocks) must go to the host
    s = create_neo_scheduler(num_device_blocks=5, neo=NeoConfig(mode_rule=rule))
    _add(s, [(12, 5)] + [(8, 5)] * num_host)
    plan = _step(s)
    on_host = [r.request_id for r, h in zip(plan.requests, plan.on_host, strict=True) if h]
    if admitted:
        assert on_host == [f"r{i}" for i in range(1, num_host + 1)]
        assert len(s.cpu_q) == num_host and s.num_waiting == 0
        assert _step(s).mode is ExecMode.PIPELINED  # and the next step does decode them
    else:
        assert [r.request_id for r in plan.requests] == ["r0"]
        assert not s.cpu_q and s.num_waiting == num_host  # they wait for the device


@pytest.mark.parametrize(("slo_s", "admitted"), [(None, True), (4.0, True), (3.9, False)])
def test_steady_admission_respects_the_step_slo(slo_s: float | None, admitted: bool) -> None:
    # as above with 3 host requests and the throughput rule (admitted), 2 layers: the next
    # decode step would be pipelined at 2 x 2 s = 4 s; a 3.9 s target rules that step out,
    # so the new requests are not prefilled onto the host to sit idle there
    s = create_neo_scheduler(num_device_blocks=5, num_layers=2,
                             neo=NeoConfig(mode_rule=ModeRule.THROUGHPUT, step_slo_s=slo_s))
    _add(s, [(12, 5)] + [(8, 5)] * 3)
    plan = _step(s)
    assert sum(plan.on_host) == (3 if admitted else 0)
    assert s.num_waiting == (0 if admitted else 3)


@pytest.mark.parametrize(("rule", "mode"), [(ModeRule.THROUGHPUT, ExecMode.PIPELINED),
                                            (ModeRule.POWER, ExecMode.SEQUENTIAL)])
def test_power_rule_declines_a_pipelined_step_that_only_stretches_the_iteration(
    rule: ModeRule, mode: ExecMode
) -> None:
    # r0 on the device, r1..r3 admitted to the host (no steady admission). Decode step:
    # device-only serves 1 request in 1 s; pipelined 4 in 2 s: 2 req/s beats 1 (throughput),
    # but 4 / 2^2 = 1 does not beat 1 / 1^2 (power): the host decodes wait.
    s = create_neo_scheduler(num_device_blocks=5,
                             neo=NeoConfig(steady_admission=False, mode_rule=rule))
    _add(s, [(12, 5)] + [(8, 5)] * 3)
    assert sum(_step(s).on_host) == 3
    plan = _step(s)
    assert plan.mode is mode
    assert sum(plan.on_host) == (3 if mode is ExecMode.PIPELINED else 0)


@pytest.mark.parametrize(("num_layers", "slo_s", "mode"), [
    (1, 2.0, ExecMode.PIPELINED), (1, 1.9, ExecMode.SEQUENTIAL),
    (3, 6.0, ExecMode.PIPELINED), (3, 5.9, ExecMode.SEQUENTIAL), (3, 2.0, ExecMode.SEQUENTIAL),
])
def test_step_slo_caps_the_pipelined_step_time(num_layers: int, slo_s: float,
                                               mode: ExecMode) -> None:
    # the throughput case above: the pipelined decode step takes 2 s per layer (2 sub-batches
    # x 1 s of linear layers), so 2 s with 1 layer and 6 s with 3; the target is per step
    s = create_neo_scheduler(num_device_blocks=5, num_layers=num_layers,
                             neo=NeoConfig(steady_admission=False,
                                           mode_rule=ModeRule.THROUGHPUT, step_slo_s=slo_s))
    _add(s, [(12, 5)] + [(8, 5)] * 3)
    assert sum(_step(s).on_host) == 3
    plan = _step(s)
    assert plan.mode is mode
    assert sum(plan.on_host) == (3 if mode is ExecMode.PIPELINED else 0)


def test_step_slo_is_validated() -> None:
    assert NeoConfig.slo(0.05) == NeoConfig(mode_rule=ModeRule.THROUGHPUT, step_slo_s=0.05)
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="step_slo_s must be a finite number"):
            NeoConfig(step_slo_s=bad)
    with pytest.raises(ConfigError, match="fastdecode has none"):
        NeoConfig(offload=OffloadMode.FASTDECODE, step_slo_s=0.1)


def test_new_prefills_fill_the_device_up_to_the_device_only_watermark() -> None:
    # 20 blocks, watermark 0.1 -> 2 reserved, as the device-only engine keeps: 18 usable.
    # r0, r1, r2 (23 + 1 tokens, 6 blocks each) take 18 <= 18; r3 (1 block) would make 19 > 18
    # and goes to the host (the old 95% cap, 19 blocks, kept it on the device).
    s = create_neo_scheduler(num_device_blocks=20, watermark=0.1,
                             neo=NeoConfig(steady_admission=False))
    _add(s, [(23, 5), (23, 5), (23, 5), (2, 5)])
    plan = _step(s)
    placement = {r.request_id: h for r, h in zip(plan.requests, plan.on_host, strict=True)}
    assert placement == {"r0": False, "r1": False, "r2": False, "r3": True}


def test_paper_config_is_the_papers_rules() -> None:
    paper = NeoConfig.paper()
    assert (paper.backlog_guard, paper.device_fcfs, paper.steady_admission) == (
        False, False, False)
    assert paper.mode_rule is ModeRule.THROUGHPUT
    assert NeoConfig().mode_rule is ModeRule.POWER and NeoConfig().steady_admission


def test_steady_admission_never_blocks_a_request_the_device_cannot_admit() -> None:
    # 14 blocks, watermark 0.1 -> 1 reserved: a 52-token prompt (14 blocks with its first
    # token) is over the device's admission limit, so it must start on the host; with nothing
    # on the device, steady admission lets it (otherwise it would wait forever)
    s = create_neo_scheduler(num_device_blocks=14, watermark=0.1, neo=NeoConfig())
    _add(s, [(52, 2)])
    plan = _step(s)
    assert plan.on_host == (True,)
    for step in range(1, 5):
        if not s.has_unfinished():
            break
        _step(s, float(step))
    assert not s.has_unfinished()


@pytest.mark.parametrize(("fraction", "on_host"), [(0.5, 3), (0.25, 2)])
def test_fixed_ratio_keeps_its_share_on_the_host_and_runs_every_host_decode(
    fraction: float, on_host: int,
) -> None:
    # 6 requests admitted at once with room everywhere: the host takes request i while it holds
    # less than fraction x (i + 1) of them (0.5: r0, r2, r4; 0.25: r0, r4)
    s = create_neo_scheduler(num_device_blocks=64, max_num_seqs=64,
                             neo=NeoConfig(offload=OffloadMode.FIXED_RATIO,
                                           host_fraction=fraction))
    _add(s, [(4, 30)] * 6)
    first = _step(s)
    assert sum(first.on_host) == on_host
    # FakeCosts would let the slack rule hide at most a few of them; a static split runs all,
    # pipelined, and never swaps a host request back in
    for _ in range(5):
        plan = _step(s)
        assert plan.mode is ExecMode.PIPELINED and not plan.swap_in
        assert sum(plan.on_host) == on_host
    with pytest.raises(ConfigError, match="host_fraction"):
        NeoConfig(offload=OffloadMode.FIXED_RATIO, host_fraction=1.0)
