from __future__ import annotations

from pathlib import Path

from mlsyskit.serving.model import ByteTokenizer, load_tokenizer
from mlsyskit.serving.server import render_chat
from mlsyskit.serving.server.protocol import ChatMessage

MESSAGES = [ChatMessage(role="system", content="be brief"), ChatMessage(role="user", content="hi")]


def test_plain_template_for_byte_tokenizer() -> None:
    assert render_chat(MESSAGES, ByteTokenizer()) == (
        "<|system|>\nbe brief\n<|user|>\nhi\n<|assistant|>\n"
    )


def test_hf_tokenizer_uses_its_own_template(tmp_path: Path) -> None:
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers import models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    raw = RawTokenizer(models.WordLevel({"[UNK]": 0, "</s>": 1}, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    hf = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="</s>", unk_token="[UNK]")
    hf.chat_template = (
        "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}[assistant]{% endif %}"
    )
    hf.save_pretrained(str(tmp_path))
    assert render_chat(MESSAGES, load_tokenizer(tmp_path)) == "[system]be brief[user]hi[assistant]"
