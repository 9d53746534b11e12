"""The server around the real engine (tiny model, PyTorch on CPU)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlsyskit.errors import ConfigError
from mlsyskit.serving.engine import build_engine
from mlsyskit.serving.model import ByteTokenizer, PagedLlama, get_model_config
from mlsyskit.serving.request import SamplingParams
from mlsyskit.serving.server import ServerConfig, build_app, serve_in_thread
from tests.serving.server.fakes import asgi_client

PROMPT = "The quick brown fox"


def engine_direct(prompt: str, max_tokens: int) -> str:
    """Greedy generation by stepping the engine by hand (no server)."""
    engine = build_engine("tiny", "fcfs", seed=0)
    tok = ByteTokenizer()
    rid = engine.add_request(tok.encode(prompt), SamplingParams(max_tokens=max_tokens,
                                                                 ignore_eos=True))
    ids: list[int] = []
    while engine.has_unfinished():
        ids += [t for out in engine.step() if out.request_id == rid for t in out.new_token_ids]
    assert len(ids) == max_tokens
    return tok.decode(ids)


def test_server_text_equals_engine_output() -> None:
    expected = engine_direct(PROMPT, 12)
    app = build_app(ServerConfig(model="tiny", policy="fcfs"))

    async def main() -> None:
        async with asgi_client(app) as client:
            r = await client.post("/v1/completions", json={
                "model": "tiny", "prompt": PROMPT, "max_tokens": 12, "temperature": 0,
                "ignore_eos": True})
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["text"] == expected
            assert r.json()["usage"]["completion_tokens"] == 12
            metrics = (await client.get("/metrics")).text
            assert 'mlsyskit_generation_tokens_total{model="tiny"} 12.0' in metrics
            assert 'mlsyskit_prompt_tokens_total{model="tiny"} 19.0' in metrics

    asyncio.run(main())


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_in_thread(build_app(ServerConfig(model="tiny", policy="fcfs"))) as url:
        yield url


def test_openai_client_completions(base_url: str) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0,
                           timeout=60)
    assert [m.id for m in client.models.list()] == ["tiny"]
    full = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=10,
                                     temperature=0, extra_body={"ignore_eos": True})
    assert full.choices[0].finish_reason == "length"
    assert full.usage is not None and full.usage.completion_tokens == 10
    assert full.choices[0].text == engine_direct(PROMPT, 10)
    stream = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=10,
                                       temperature=0, stream=True,
                                       extra_body={"ignore_eos": True})
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks) == full.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"


def test_openai_client_chat_and_errors(base_url: str) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0,
                           timeout=60)
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "user", "content": "hello"}]
    full = client.chat.completions.create(model="tiny", messages=messages, max_tokens=8,
                                          temperature=0, seed=1)
    streamed = client.chat.completions.create(model="tiny", messages=messages, max_tokens=8,
                                              temperature=0, seed=1, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text == full.choices[0].message.content
    with pytest.raises(openai.BadRequestError, match="unknown model 'gpt-4o'"):
        client.chat.completions.create(model="gpt-4o", messages=messages)
    with pytest.raises(openai.BadRequestError, match="maximum context length is 256"):
        client.completions.create(model="tiny", prompt="x" * 300)
    again = client.completions.create(model="tiny", prompt="still serving", max_tokens=3,
                                      extra_body={"ignore_eos": True})
    assert again.usage is not None and again.usage.completion_tokens == 3


def _checkpoint_dir(path: Path, tokenizer_size: int) -> Path:
    """A tiny Llama checkpoint plus a word-level tokenizer with ids w1 ... w{size-1}."""
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers import models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    PagedLlama(get_model_config("tiny"), seed=5).save_pretrained(path)
    vocab = {"[UNK]": 0, **{f"w{i}": i for i in range(1, tokenizer_size)}}
    raw = RawTokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="w1", unk_token="[UNK]") \
        .save_pretrained(str(path))
    return path


def test_serving_a_local_checkpoint(tmp_path: Path) -> None:
    app = build_app(ServerConfig(checkpoint=_checkpoint_dir(tmp_path / "my-llama", 264)))

    async def main() -> None:
        async with asgi_client(app) as client:
            assert (await client.get("/v1/models")).json()["data"][0]["id"] == "my-llama"
            r = await client.post("/v1/completions", json={
                "model": "my-llama", "prompt": "w5 w6 w7", "max_tokens": 4, "temperature": 0,
                "ignore_eos": True})
            assert r.json()["usage"] == {"prompt_tokens": 3, "completion_tokens": 4,
                                         "total_tokens": 7}
            words = r.json()["choices"][0]["text"].split()
            assert len(words) == 4 and all(w.startswith("w") for w in words)

    asyncio.run(main())


def test_tokenizer_larger_than_the_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tokenizer has 300 ids but the model only 264"):
        build_app(ServerConfig(checkpoint=_checkpoint_dir(tmp_path / "big-vocab", 300)))
