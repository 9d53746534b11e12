from __future__ import annotations

from pathlib import Path

import pytest

from mlsyskit.serving.model import ByteTokenizer, ModelError, Tokenizer, load_tokenizer


def test_byte_round_trip_unicode() -> None:
    tok = ByteTokenizer()
    text = "héllo, wörld ✓"
    ids = tok.encode(text)
    assert ids[:2] == [104, 195]  # 'h', first byte of 'é'
    assert tok.decode(ids) == text
    assert tok.decode([tok.bos_token_id, *ids, tok.eos_token_id]) == text
    assert tok.encode("a", add_bos=True) == [256, 97]


def test_byte_decode_rejects_out_of_range() -> None:
    with pytest.raises(ModelError, match="outside"):
        ByteTokenizer().decode([1, 264])


def test_default_is_bytes_and_matches_presets() -> None:
    from mlsyskit.serving.model import get_model_config

    tok = load_tokenizer(None)
    assert isinstance(tok, ByteTokenizer) and isinstance(tok, Tokenizer)
    assert tok.vocab_size == get_model_config("tiny").vocab_size


def test_local_hf_tokenizer_round_trip(tmp_path: Path) -> None:
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers import models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "</s>": 1, "hello": 2, "world": 3, "!": 4}
    raw = RawTokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="</s>", unk_token="[UNK]") \
        .save_pretrained(str(tmp_path))
    tok = load_tokenizer(tmp_path)
    assert tok.encode("hello world !") == [2, 3, 4]
    assert tok.eos_token_id == 1 and tok.vocab_size == 5
    assert tok.decode([2, 3, 1]) == "hello world"


def test_bad_tokenizer_dir(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a tokenizer directory"):
        load_tokenizer(tmp_path / "nope")
    with pytest.raises(ModelError, match="cannot load a tokenizer"):
        load_tokenizer(tmp_path)
