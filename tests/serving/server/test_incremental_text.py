"""Streaming text equals the one-shot decode, however the tokens are chunked."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mlsyskit.serving.model import ByteTokenizer
from mlsyskit.serving.server.generation import IncrementalText

TOK = ByteTokenizer()
TEXT = st.text(alphabet=st.sampled_from("ab é✓\n"), min_size=0, max_size=30)


def stream(ids: list[int], chunks: list[int], stop: list[str]) -> tuple[list[str], bool]:
    text, deltas, start = IncrementalText(TOK, stop), [], 0
    for size in [*chunks, len(ids)]:
        piece = ids[start:start + size]
        start += len(piece)
        delta, stopped = text.push(piece, finished=start >= len(ids))
        deltas.append(delta)
        if stopped or start >= len(ids):
            return deltas, stopped
    raise AssertionError("unreachable")


@settings(max_examples=200, deadline=None)
@given(TEXT, st.lists(st.integers(1, 4), max_size=40))
def test_without_stop_the_deltas_are_the_decode(text: str, chunks: list[int]) -> None:
    ids = TOK.encode(text) or [TOK.eos_token_id]
    deltas, stopped = stream(ids, chunks, [])
    assert "".join(deltas) == TOK.decode(ids) and not stopped
    assert all("\ufffd" not in d for d in deltas)  # no character was ever split


@settings(max_examples=200, deadline=None)
@given(TEXT, st.lists(st.integers(1, 4), max_size=40), st.text(alphabet="ab é", min_size=1,
                                                                 max_size=3))
def test_one_stop_string_cuts_at_its_first_occurrence(
    text: str, chunks: list[int], stop: str
) -> None:
    ids = TOK.encode(text) or [TOK.eos_token_id]
    deltas, stopped = stream(ids, chunks, [stop])
    full = TOK.decode(ids)
    assert stopped == (stop in full)
    assert "".join(deltas) == (full[:full.find(stop)] if stop in full else full)
