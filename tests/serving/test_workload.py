from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest

from mlsyskit.errors import ConfigError, DataError
from mlsyskit.serving.request import ApiCall
from mlsyskit.serving.workload import (
    ArrivalProcess,
    LengthDistribution,
    LengthKind,
    RequestSpec,
    arrival_times,
    load_alpaca_trace,
    load_augmented_trace,
    load_trace,
    load_trace_jsonl,
    make_workload,
    shared_data_dir,
    synthetic_workload,
    write_trace_jsonl,
)

HAVE_SHARED = (shared_data_dir() / "trail" / "alpaca_trace.jsonl").is_file()


def test_arrivals_are_seeded_increasing_and_at_the_asked_rate() -> None:
    a = arrival_times(20_000, 4.0, seed=3)
    assert a == arrival_times(20_000, 4.0, seed=3) and a != arrival_times(20_000, 4.0, seed=4)
    assert all(x < y for x, y in itertools.pairwise(a))
    assert 20_000 / a[-1] == pytest.approx(4.0, rel=0.03)
    g = arrival_times(20_000, 4.0, process=ArrivalProcess.GAMMA, cv=3.0, seed=3)
    gaps = [y - x for x, y in itertools.pairwise(g)]
    mean = sum(gaps) / len(gaps)
    cv = math.sqrt(sum((x - mean) ** 2 for x in gaps) / len(gaps)) / mean
    assert mean == pytest.approx(0.25, rel=0.05) and cv == pytest.approx(3.0, rel=0.1)
    assert arrival_times(3, math.inf) == [0.0, 0.0, 0.0]
    with pytest.raises(ConfigError):
        arrival_times(3, 0.0)


def test_length_distributions_respect_bounds_and_mean() -> None:
    import random

    rng = random.Random(0)
    dist = LengthDistribution(LengthKind.LOGNORMAL, mean=100, low=1, high=100_000, sigma=0.5)
    xs = [dist.sample(rng) for _ in range(20_000)]
    assert sum(xs) / len(xs) == pytest.approx(100, rel=0.03)
    clipped = LengthDistribution(LengthKind.LOGNORMAL, mean=100, low=50, high=120, sigma=1.0)
    assert all(50 <= clipped.sample(rng) <= 120 for _ in range(1000))
    assert LengthDistribution(LengthKind.FIXED, mean=7).sample(rng) == 7
    specs = synthetic_workload(5, 2.0, seed=1)
    assert [s.request_id for s in specs] == [f"req-{i}" for i in range(5)]


def test_own_trace_round_trips(tmp_path: Path) -> None:
    specs = [RequestSpec("a", 0.5, 10, 3), RequestSpec("b", 1.5, 4, 9, api_calls=(
        ApiCall(2, 0.1, 5),))]
    path = tmp_path / "t.jsonl"
    write_trace_jsonl(specs, path)
    assert load_trace(path) == specs
    assert make_workload(f"trace:{path}", 1, 1.0) == specs[:1]  # keeps its own arrival times


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "t.jsonl:2: not JSON"),
        ('{"arrival_time": 0, "num_prompt_tokens": "x", "num_output_tokens": 1}',
         "t.jsonl:2: 'num_prompt_tokens' must be int"),
        ('{"arrival_time": 0, "num_output_tokens": 1}', "t.jsonl:2: missing 'num_prompt_tokens'"),
        ('[1, 2]', "t.jsonl:2: expected a JSON object"),
    ],
)
def test_bad_trace_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "t.jsonl"
    good = '{"arrival_time": 0, "num_prompt_tokens": 3, "num_output_tokens": 1}'
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(DataError, match=message):
        load_trace_jsonl(path)


def test_alpaca_and_augmented_lines_are_parsed_by_hand(tmp_path: Path) -> None:
    alpaca = tmp_path / "a.jsonl"
    alpaca.write_text(json.dumps({"prompt": "x" * 9, "out_tokens": 15}) + "\n")
    (spec,) = load_alpaca_trace(alpaca)
    assert (spec.num_prompt_tokens, spec.num_output_tokens) == (3, 15)  # ceil(9 / 4)
    aug = tmp_path / "g.json"
    aug.write_text(json.dumps({"r": [
        {"prompt_tokens": 392, "completion_tokens": 127, "api_time": 0.5, "api_token_length": 21},
        {"prompt_tokens": 540, "completion_tokens": 47, "api_time": 2.0, "api_token_length": 3},
        {"prompt_tokens": 590, "completion_tokens": 10},
    ]}))
    (spec,) = load_augmented_trace(aug)
    assert (spec.num_prompt_tokens, spec.num_output_tokens) == (392, 184)
    assert spec.api_calls == (ApiCall(127, 0.5, 21), ApiCall(174, 2.0, 3))
    aug.write_text(json.dumps({"r": [{"prompt_tokens": 3}]}))
    with pytest.raises(DataError, match="request r segment 0: missing 'completion_tokens'"):
        load_augmented_trace(aug)
    with pytest.raises(DataError, match="trace not found"):
        load_alpaca_trace(tmp_path / "missing.jsonl")


@pytest.mark.skipif(not HAVE_SHARED, reason="shared/data is not next to this checkout")
def test_shared_traces_load() -> None:
    alpaca = load_alpaca_trace()
    assert len(alpaca) == 2000 and sum(s.num_output_tokens == 512 for s in alpaca) == 427
    aug = load_augmented_trace()
    assert len(aug) == 397 and any(s.api_calls for s in aug)
    picked = make_workload("alpaca", 50, 2.0, seed=1)
    assert len(picked) == 50 and picked[-1].arrival_time > 0
