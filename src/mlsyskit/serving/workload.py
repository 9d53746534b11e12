"""Workloads: seeded synthetic generators, our JSONL trace format and the shared real traces.

Everything becomes a list of :class:`RequestSpec` (arrival time, prompt and output lengths,
optional prompt text or ids, optional API calls), which :func:`mlsyskit.serving.runner.run_workload`
feeds to an engine. Bad trace lines raise :class:`~mlsyskit.errors.DataError` with file and line.
"""

from __future__ import annotations

import enum
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mlsyskit.errors import ConfigError, DataError
from mlsyskit.serving.request import ApiCall

#: characters per token used to size the Alpaca prompts for Llama-3's tokenizer (not shipped:
#: English text averages about 4 characters per BPE token)
CHARS_PER_TOKEN = 4.0


@dataclass(frozen=True)
class RequestSpec:
    """One request of a workload (before it enters an engine)."""

    request_id: str
    arrival_time: float
    num_prompt_tokens: int
    num_output_tokens: int
    prompt: str | None = None
    prompt_token_ids: tuple[int, ...] | None = None
    api_calls: tuple[ApiCall, ...] = ()


class ArrivalProcess(enum.Enum):
    """Inter-arrival time distributions."""

    POISSON = "poisson"  # exponential gaps (coefficient of variation 1)
    GAMMA = "gamma"  # gamma gaps with a chosen coefficient of variation (cv > 1: bursty)


def arrival_times(
    n: int, rate: float, *, process: ArrivalProcess = ArrivalProcess.POISSON, cv: float = 2.0,
    seed: int = 0,
) -> list[float]:
    """``n`` arrival times (seconds from 0) at ``rate`` requests/s on average.

    For ``GAMMA``, gaps have shape ``1/cv²`` and mean ``1/rate``; ``rate = inf`` puts every
    arrival at 0 (an offline batch).
    """
    if rate <= 0:
        raise ConfigError(f"arrival rate must be > 0; got {rate}")
    if math.isinf(rate):
        return [0.0] * n
    rng = random.Random(seed)
    t = 0.0
    times = []
    shape = 1.0 / (cv * cv)
    for _ in range(n):
        if process is ArrivalProcess.POISSON:
            t += rng.expovariate(rate)
        else:
            t += rng.gammavariate(shape, 1.0 / (rate * shape))
        times.append(t)
    return times


class LengthKind(enum.Enum):
    FIXED = "fixed"
    UNIFORM = "uniform"
    LOGNORMAL = "lognormal"


@dataclass(frozen=True)
class LengthDistribution:
    """Token lengths: fixed ``mean``, uniform on [low, high], or log-normal with ``mean`` and
    ``sigma`` (of the log), clipped to [low, high]."""

    kind: LengthKind
    mean: float = 0.0
    low: int = 1
    high: int = 1 << 30
    sigma: float = 1.0

    def sample(self, rng: random.Random) -> int:
        if self.kind is LengthKind.FIXED:
            return max(self.low, int(self.mean))
        if self.kind is LengthKind.UNIFORM:
            return rng.randint(self.low, self.high)
        mu = math.log(self.mean) - self.sigma**2 / 2  # so that E[X] = mean before clipping
        return min(self.high, max(self.low, round(rng.lognormvariate(mu, self.sigma))))


#: prompt and output lengths of the mixed workload used by the benchmarks (chat-like)
MIXED_PROMPT = LengthDistribution(LengthKind.LOGNORMAL, mean=300, low=8, high=2048, sigma=0.8)
MIXED_OUTPUT = LengthDistribution(LengthKind.LOGNORMAL, mean=200, low=4, high=1024, sigma=0.9)


def synthetic_workload(
    num_requests: int,
    rate: float,
    *,
    process: ArrivalProcess = ArrivalProcess.POISSON,
    prompt: LengthDistribution = MIXED_PROMPT,
    output: LengthDistribution = MIXED_OUTPUT,
    cv: float = 2.0,
    seed: int = 0,
) -> list[RequestSpec]:
    """Seeded requests with the given arrival process and length distributions."""
    times = arrival_times(num_requests, rate, process=process, cv=cv, seed=seed)
    rng = random.Random(seed + 1)
    return [
        RequestSpec(f"req-{i}", t, prompt.sample(rng), output.sample(rng))
        for i, t in enumerate(times)
    ]


def with_arrivals(
    specs: Sequence[RequestSpec], rate: float, *, process: ArrivalProcess = ArrivalProcess.POISSON,
    cv: float = 2.0, seed: int = 0,
) -> list[RequestSpec]:
    """The same requests with fresh arrival times (traces that carry no times of their own)."""
    times = arrival_times(len(specs), rate, process=process, cv=cv, seed=seed)
    return [replace(s, arrival_time=t) for s, t in zip(specs, times, strict=True)]


# --- files -----------------------------------------------------------------------------------
def shared_data_dir() -> Path:
    """``<repo>/../shared/data`` (where the shared traces live next to the checkout)."""
    root = Path(__file__).resolve().parents[3]
    return root.parent / "shared" / "data"


def _shared_file(path: Path | None, relative: str) -> Path:
    file = path if path is not None else shared_data_dir() / relative
    if not file.is_file():
        raise DataError(
            f"{file}: trace not found (give its path explicitly, or place shared/data next to "
            "the repository)"
        )
    return file


def _field(obj: dict[str, Any], keys: tuple[str, ...], where: str, kind: type) -> Any:
    for key in keys:
        if key in obj:
            value = obj[key]
            if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
            if kind is int and isinstance(value, int) and not isinstance(value, bool):
                return value
            raise DataError(f"{where}: {key!r} must be {kind.__name__}; got {value!r}")
    raise DataError(f"{where}: missing {' or '.join(repr(k) for k in keys)}")


def _jsonl_objects(path: Path) -> list[tuple[str, dict[str, Any]]]:
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{where}: expected a JSON object")
        out.append((where, obj))
    return out


def load_alpaca_trace(
    path: Path | None = None, *, chars_per_token: float = CHARS_PER_TOKEN
) -> list[RequestSpec]:
    """The TRAIL Alpaca trace (``{"prompt", "out_tokens"}`` per line), all arriving at 0.

    Prompt lengths are ``ceil(len(prompt) / chars_per_token)`` tokens: the Llama-3 tokenizer is
    not available offline. Use :func:`with_arrivals` to spread the requests in time.
    """
    file = _shared_file(path, "trail/alpaca_trace.jsonl")
    specs = []
    for i, (where, obj) in enumerate(_jsonl_objects(file)):
        prompt = obj.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise DataError(f"{where}: 'prompt' must be a non-empty string")
        out = _field(obj, ("out_tokens",), where, int)
        if out < 1:
            raise DataError(f"{where}: 'out_tokens' must be >= 1; got {out}")
        n_prompt = max(1, math.ceil(len(prompt) / chars_per_token))
        specs.append(RequestSpec(f"alpaca-{i}", 0.0, n_prompt, out, prompt=prompt))
    return specs


def _tokens(seg: dict[str, Any], keys: tuple[str, str], where: str, chars_per_token: float
            ) -> int:
    """A token count: ``keys[0]`` as an int, or ``keys[1]`` as a count or as text to size."""
    if keys[0] in seg:
        return int(_field(seg, keys[:1], where, int))
    value = seg.get(keys[1])
    if isinstance(value, str):
        return math.ceil(len(value) / chars_per_token)
    return int(_field(seg, keys, where, int))


def load_augmented_trace(
    path: Path | None = None, *, chars_per_token: float = CHARS_PER_TOKEN
) -> list[RequestSpec]:
    """An INFERCEPT/LAMPS augmented-LLM trace: ``{id: [segment, ...]}``, arriving at 0.

    The first segment's prompt is the request's prompt; each segment's completion tokens are
    generated before its API call (``api_time`` seconds, returning ``api_token_length`` tokens);
    the last segment has no call. Some segments carry text (``prompt``, ``completion``,
    ``api_token``) instead of counts; text is sized at ``chars_per_token``.
    """
    file = _shared_file(path, "augmented-llm/multi_api_trace.json")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{file}: not a JSON trace ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{file}: expected an object of request id -> segments")
    specs = []
    for rid, segments in data.items():
        where = f"{file}: request {rid}"
        if not isinstance(segments, list) or not segments:
            raise DataError(f"{where}: expected a non-empty list of segments")
        calls = []
        generated = 0
        prompt = 0
        for k, seg in enumerate(segments):
            w = f"{where} segment {k}"
            if not isinstance(seg, dict):
                raise DataError(f"{w}: expected an object")
            if k == 0:
                prompt = _tokens(seg, ("prompt_tokens", "prompt"), w, chars_per_token)
            generated += _tokens(seg, ("completion_tokens", "completion"), w, chars_per_token)
            if k < len(segments) - 1:
                duration = _field(seg, ("api_time",), w, float)
                returned = _tokens(seg, ("api_token_length", "api_token"), w, chars_per_token)
                calls.append(ApiCall(generated, duration, returned))
        if prompt < 1 or generated < 1:
            raise DataError(f"{where}: needs >= 1 prompt and >= 1 completion token")
        # a call right at the end of the output would never fire; the request just finishes
        calls = [c for c in calls if 0 < c.after_num_output_tokens < generated]
        specs.append(RequestSpec(str(rid), 0.0, prompt, generated, api_calls=tuple(calls)))
    return specs


def write_trace_jsonl(specs: Sequence[RequestSpec], path: Path) -> None:
    """Our trace format: one request per line (see :func:`load_trace_jsonl`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for s in specs:
            obj: dict[str, Any] = {
                "request_id": s.request_id,
                "arrival_time": s.arrival_time,
                "num_prompt_tokens": s.num_prompt_tokens,
                "num_output_tokens": s.num_output_tokens,
            }
            if s.api_calls:
                obj["api_calls"] = [
                    [c.after_num_output_tokens, c.duration_s, c.num_return_tokens]
                    for c in s.api_calls
                ]
            fh.write(json.dumps(obj) + "\n")


def load_trace_jsonl(path: Path) -> list[RequestSpec]:
    """Read a JSONL trace: our format, or the Alpaca one (lines with ``prompt``/``out_tokens``).

    Our format per line: ``{"arrival_time": s, "num_prompt_tokens": n, "num_output_tokens": m,
    "request_id": optional, "api_calls": optional [[after_tokens, seconds, return_tokens], ...]}``.
    """
    if not path.is_file():
        raise DataError(f"{path}: trace not found")
    objects = _jsonl_objects(path)
    if objects and "out_tokens" in objects[0][1]:
        return load_alpaca_trace(path)
    specs = []
    for i, (where, obj) in enumerate(objects):
        arrival = _field(obj, ("arrival_time",), where, float)
        n_prompt = _field(obj, ("num_prompt_tokens",), where, int)
        n_out = _field(obj, ("num_output_tokens",), where, int)
        if n_prompt < 1 or n_out < 1 or arrival < 0:
            raise DataError(f"{where}: lengths must be >= 1 and arrival_time >= 0")
        calls = []
        for c in obj.get("api_calls", []):
            if not (isinstance(c, list) and len(c) == 3):
                raise DataError(f"{where}: each api call is [after_tokens, seconds, tokens]")
            calls.append(ApiCall(int(c[0]), float(c[1]), int(c[2])))
        rid = obj.get("request_id", f"req-{i}")
        specs.append(RequestSpec(str(rid), arrival, n_prompt, n_out, api_calls=tuple(calls)))
    return specs


def load_trace(path: Path) -> list[RequestSpec]:
    """Any supported trace file, by extension: ``.json`` augmented-LLM, ``.jsonl`` otherwise."""
    if path.suffix == ".json":
        return load_augmented_trace(path)
    return load_trace_jsonl(path)


def _resample(specs: list[RequestSpec], n: int, seed: int) -> list[RequestSpec]:
    """``n`` requests drawn from ``specs`` (without replacement when there are enough)."""
    rng = random.Random(seed)
    picked = rng.sample(specs, n) if n <= len(specs) else rng.choices(specs, k=n)
    return [replace(s, request_id=f"{s.request_id}#{i}") for i, s in enumerate(picked)]


def make_workload(
    name: str, num_requests: int, rate: float, *, cv: float = 2.0, seed: int = 0
) -> list[RequestSpec]:
    """A workload from its CLI name.

    ``poisson`` / ``gamma``: synthetic mixed lengths; ``alpaca``: the TRAIL trace's lengths;
    ``augmented``: the multi-API INFERCEPT trace; ``trace:PATH``: a file (our JSONL keeps its
    arrival times; Alpaca lines and ``.json`` augmented traces get arrivals at ``rate``).
    Traces are resampled (seeded) to ``num_requests``.
    """
    if num_requests < 1:
        raise ConfigError(f"num_requests must be >= 1; got {num_requests}")
    if name in ("poisson", "gamma"):
        return synthetic_workload(num_requests, rate, process=ArrivalProcess(name), cv=cv,
                                  seed=seed)
    if name == "alpaca":
        base = load_alpaca_trace()
    elif name == "augmented":
        base = load_augmented_trace()
    elif name.startswith("trace:"):
        path = Path(name.removeprefix("trace:"))
        base = load_trace(path)
        if any(s.arrival_time > 0 for s in base):
            return base[:num_requests]
    else:
        raise ConfigError(
            f"unknown workload {name!r}: use poisson, gamma, alpaca, augmented or trace:PATH"
        )
    if not base:
        raise DataError(f"workload {name!r} has no requests")
    return with_arrivals(_resample(base, num_requests, seed), rate, cv=cv, seed=seed)
