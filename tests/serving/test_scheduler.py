from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsyskit.serving.errors import RequestTooLargeError
from mlsyskit.serving.policy import FCFSPolicy, KVAction, Policy, SJFPolicy
from mlsyskit.serving.request import ApiCall, RequestStatus, make_request

from .factories import create_requests, create_scheduler, fake_result, run_to_completion


def _news(plans: list) -> list[list[int]]:
    return [p.num_new_tokens for p in plans]


def test_continuous_batching_prefills_then_decodes_together() -> None:
    s = create_scheduler()
    for r in create_requests([(6, 3), (6, 3)]):
        s.add(r, 0.0)
    plans = run_to_completion(s)
    assert _news(plans) == [[6, 6], [1, 1], [1, 1]]
    c = s.counters()
    assert (c.num_generated_tokens, c.num_computed_tokens, c.num_finished) == (6, 16, 2)


def test_chunked_prefill_splits_a_prompt_over_the_token_budget() -> None:
    s = create_scheduler(max_num_batched_tokens=4)
    (r,) = create_requests([(10, 2)])
    s.add(r, 0.0)
    plans = run_to_completion(s)
    assert _news(plans) == [[4], [4], [2], [1]]
    assert [p.context_lens for p in plans] == [[4], [8], [10], [11]]
    assert r.output_token_ids == [7, 7]


def test_without_chunking_a_prompt_waits_for_a_whole_budget() -> None:
    s = create_scheduler(max_num_batched_tokens=8, chunked=False)
    for r in create_requests([(6, 1), (6, 1)]):
        s.add(r, 0.0)
    assert _news(run_to_completion(s)) == [[6], [6]]
    with pytest.raises(RequestTooLargeError, match="max_num_batched_tokens=8"):
        s.add(make_request("big", 8, 2), 0.0)


def test_max_num_seqs_caps_the_batch() -> None:
    s = create_scheduler(max_num_seqs=2)
    for r in create_requests([(2, 2), (2, 2), (2, 2)]):
        s.add(r, 0.0)
    plans = run_to_completion(s)
    assert [len(p.requests) for p in plans] == [2, 2, 1, 1]


def test_request_larger_than_the_device_pool_is_refused() -> None:
    s = create_scheduler(num_device_blocks=2, block_size=4)
    with pytest.raises(RequestTooLargeError, match="device pool has 2"):
        s.add(make_request("r", 6, 3), 0.0)


def test_preemption_by_recompute_discards_the_latest_arrival() -> None:
    s = create_scheduler(num_device_blocks=4, block_size=4)
    r0, r1 = create_requests([(7, 4), (7, 4)])
    s.add(r0, 0.0)
    s.add(r1, 0.0)
    plans = run_to_completion(s)
    # step 3: r0 needs a third block, r1 is evicted; it recomputes 7 + 2 tokens in step 5
    assert _news(plans) == [[7, 7], [1, 1], [1], [1], [9], [1]]
    assert (r0.num_preemptions, r1.num_preemptions) == (0, 1)
    assert s.counters().num_preemptions == 1 and not plans[2].swap_out


def test_preemption_by_swap_moves_blocks_and_skips_the_recompute() -> None:
    s = create_scheduler(num_device_blocks=4, block_size=4, policy=FCFSPolicy(
        preemption=KVAction.SWAP))
    r0, r1 = create_requests([(7, 4), (7, 4)])
    s.add(r0, 0.0)
    s.add(r1, 0.0)
    plans = run_to_completion(s)
    assert _news(plans) == [[7, 7], [1, 1], [1], [1], [1], [1]]
    assert plans[2].swap_out == [(2, 0), (3, 1)]
    assert [h for h, _ in plans[4].swap_in] == [0, 1]
    assert s.counters().num_swap_outs == 1
    assert r1.output_token_ids == [7, 7, 7, 7]


def test_sjf_runs_the_shortest_known_output_first() -> None:
    s = create_scheduler(max_num_seqs=1, policy=SJFPolicy())
    reqs = create_requests([(2, 5), (2, 1), (2, 3)])
    for r in reqs:
        s.add(r, 0.0)
    order = []
    now = 0.0
    while s.has_unfinished():
        plan = s.schedule(now)
        now += 1
        order += [r.request_id for r in s.update(plan, fake_result(plan), now)]
    assert order == ["r1", "r2", "r0"]


def test_preemptive_sjf_evicts_a_longer_running_job() -> None:
    s = create_scheduler(max_num_seqs=1, policy=SJFPolicy(preemptive=True))
    long, short = create_requests([(2, 9), (2, 1)])
    s.add(long, 0.0)
    plan = s.schedule(0.0)
    s.update(plan, fake_result(plan), 1.0)
    s.add(short, 1.0)
    plan = s.schedule(1.0)
    assert [r.request_id for r in plan.requests] == ["r1"]
    assert long.status is RequestStatus.WAITING and long.num_preemptions == 1


def test_abort_frees_blocks_everywhere() -> None:
    s = create_scheduler()
    r0, r1 = create_requests([(5, 4), (5, 4)])
    s.add(r0, 0.0)
    s.add(r1, 0.0)
    plan = s.schedule(0.0)
    s.update(plan, fake_result(plan), 0.1)
    s.abort("r0")
    assert r0.status is RequestStatus.FINISHED_ABORTED
    assert s.bm.device.num_used == 2  # r1's two blocks
    assert s.abort("r0") is None
    s.bm.check_invariants()


@pytest.mark.parametrize(
    ("action", "resume_news"),
    [(KVAction.PRESERVE, [4]), (KVAction.DISCARD, [4 + 2 + 3]), (KVAction.SWAP, [4])],
)
def test_api_call_pauses_and_resumes_with_the_returned_tokens(
    action: KVAction, resume_news: list[int]
) -> None:
    s = create_scheduler(policy=Policy(api_action=action))
    r = make_request("r", 4, 4, api_calls=[ApiCall(2, duration_s=1.0, num_return_tokens=3)])
    s.add(r, 0.0)
    for t in (0.0, 0.1):  # prefill + first token, then the second token
        plan = s.schedule(t)
        s.update(plan, fake_result(plan), t + 0.1)
    assert r.status is RequestStatus.PAUSED and s.next_resume_time() == pytest.approx(1.2)
    held = {KVAction.PRESERVE: 2, KVAction.DISCARD: 0, KVAction.SWAP: 0}[action]
    assert s.bm.device.num_used == held
    assert s.schedule(0.5).is_empty != (action is KVAction.SWAP)  # a swap's copies go first
    plan = s.schedule(1.3)
    assert plan.num_new_tokens == resume_news  # 3 returned + 1 pending (+ recompute)
    assert r.num_tokens == 4 + 2 + 3
    s.update(plan, fake_result(plan), 1.4)
    plans = run_to_completion(s)
    assert r.num_output_tokens == 4 and len(plans) == 1


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.tuples(st.integers(1, 20), st.integers(1, 12)), min_size=1, max_size=12),
    num_device_blocks=st.integers(8, 24),
    budget=st.integers(1, 40),
    max_seqs=st.integers(1, 6),
    swap=st.booleans(),
    sjf=st.booleans(),
    preemptive=st.booleans(),
    api=st.sampled_from(list(KVAction)),
)
def test_every_request_finishes_within_limits_and_blocks_are_conserved(
    lengths: list[tuple[int, int]],
    num_device_blocks: int,
    budget: int,
    max_seqs: int,
    swap: bool,
    sjf: bool,
    preemptive: bool,
    api: KVAction,
) -> None:
    preemption = KVAction.SWAP if swap else KVAction.DISCARD
    policy = (
        SJFPolicy(preemption=preemption, api_action=api, preemptive=preemptive)
        if sjf else FCFSPolicy(preemption=preemption, api_action=api)
    )
    s = create_scheduler(
        num_device_blocks=num_device_blocks, num_host_blocks=6, block_size=4,
        max_num_batched_tokens=budget, max_num_seqs=max_seqs, policy=policy,
    )
    reqs = []
    for i, (p, o) in enumerate(lengths):
        # every third request calls an API halfway through its output, returning 2 tokens
        calls = [ApiCall(o // 2, 0.02, 2)] if i % 3 == 0 and o > 1 else []
        if -(-(p + o + 2 * len(calls)) // 4) <= num_device_blocks:
            reqs.append(make_request(f"r{i}", p, o, prompt_token_ids=list(range(p)),
                                     api_calls=calls))
    for r in reqs:
        s.add(r, 0.0)
    plans = run_to_completion(s)
    for plan in plans:
        assert plan.num_batched_tokens == sum(plan.num_new_tokens) <= budget
        assert len(plan.requests) <= max_seqs
        assert len({r.request_id for r in plan.requests}) == len(plan.requests)
        assert plan.num_prefill_seqs == sum(1 for n in plan.num_new_tokens if n > 1)
    for r in reqs:
        assert r.status is RequestStatus.FINISHED_LENGTH
        assert r.output_token_ids == [7] * r.sampling.max_tokens
        assert r.num_tokens == r.num_prompt_tokens + r.sampling.max_tokens + 2 * len(r.api_calls)
    assert s.bm.device.num_used == 0 and s.bm.host.num_used == 0
    c = s.counters()
    assert c.num_generated_tokens == sum(r.sampling.max_tokens for r in reqs)


def test_kv_preserved_over_an_api_call_is_reclaimed_rather_than_deadlocking() -> None:
    # found by the property test: r3 comes back from its call holding 6 of 8 blocks while the
    # earlier r0 (recomputing) needs 3; the idle KV must be evicted for r0 to run
    s = create_scheduler(num_device_blocks=8, block_size=4, max_num_batched_tokens=9,
                         max_num_seqs=2, policy=FCFSPolicy(api_action=KVAction.PRESERVE))
    lengths = [(1, 7), (1, 1), (1, 1), (17, 10)]
    for i, (p, o) in enumerate(lengths):
        calls = [ApiCall(o // 2, 0.02, 2)] if i % 3 == 0 else []
        s.add(make_request(f"r{i}", p, o, prompt_token_ids=list(range(p)), api_calls=calls), 0.0)
    run_to_completion(s, max_steps=500)
    assert s.counters().num_finished == 4


def test_sjf_uses_a_given_predictor_once_per_request() -> None:
    calls: list[str] = []

    class LongestFirst:
        def predict(self, request: object) -> float:
            assert hasattr(request, "request_id")
            calls.append(request.request_id)
            return -float(request.sampling.max_tokens)  # type: ignore[attr-defined]

    s = create_scheduler(max_num_seqs=1, policy=SJFPolicy(predictor=LongestFirst()))
    for r in create_requests([(2, 1), (2, 3), (2, 2)]):
        s.add(r, 0.0)
    order, now = [], 0.0
    while s.has_unfinished():
        plan = s.schedule(now)
        now += 1
        order += [r.request_id for r in s.update(plan, fake_result(plan), now)]
    assert order == ["r1", "r2", "r0"] and calls == ["r0", "r1", "r2"]


def test_a_policy_naming_no_valid_victim_is_an_error() -> None:
    from mlsyskit.serving.errors import ServingError

    class NoVictims(FCFSPolicy):
        def choose_victim(self, running, incoming):  # type: ignore[no-untyped-def]
            return None

    s = create_scheduler(num_device_blocks=2, block_size=4, policy=NoVictims())
    for r in create_requests([(4, 4), (4, 4)]):
        s.add(r, 0.0)
    plan = s.schedule(0.0)
    s.update(plan, fake_result(plan), 0.1)
    with pytest.raises(ServingError, match="must name one of the candidates"):
        s.schedule(0.1)
