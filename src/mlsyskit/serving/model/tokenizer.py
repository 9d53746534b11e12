"""Tokenizers: a byte-level default that needs no files, or a local Hugging Face tokenizer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from mlsyskit.serving.model.config import ModelError


@runtime_checkable
class Tokenizer(Protocol):
    """What the engine and server need from a tokenizer."""

    @property
    def eos_token_id(self) -> int: ...

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, token_ids: Sequence[int]) -> str: ...


class ByteTokenizer:
    """UTF-8 bytes as ids 0-255, then ``<bos>`` 256, ``<eos>`` 257, ``<pad>`` 258 and five
    reserved ids 259-263 (``vocab_size`` 264, the size of the "tiny" and "small" presets).

    ``encode`` never adds specials (pass ``add_bos=True`` for a leading ``<bos>``). ``decode``
    drops special ids and replaces invalid UTF-8 (a random model emits arbitrary bytes).

    Raises
    ------
    ModelError
        From ``decode`` for an id outside ``[0, vocab_size)``.
    """

    bos_token_id = 256
    eos_token_id = 257
    pad_token_id = 258
    vocab_size = 264

    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        """Ids of ``text``'s UTF-8 bytes, with ``<bos>`` first if asked."""
        ids = list(text.encode("utf-8"))
        return [self.bos_token_id, *ids] if add_bos else ids

    def decode(self, token_ids: Sequence[int]) -> str:
        """Text of the byte ids (special ids dropped, invalid UTF-8 replaced by U+FFFD)."""
        bad = [t for t in token_ids if not 0 <= t < self.vocab_size]
        if bad:
            raise ModelError(f"ByteTokenizer: ids {bad[:5]} outside [0, {self.vocab_size})")
        return bytes(t for t in token_ids if t < 256).decode("utf-8", errors="replace")


class HFTokenizer:
    """A Hugging Face tokenizer read from a local directory (never downloads)."""

    def __init__(self, path: Path) -> None:
        from transformers import AutoTokenizer

        try:
            self._tok: Any = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except Exception as exc:  # transformers raises OSError/ValueError/... for bad dirs
            raise ModelError(f"{path}: cannot load a tokenizer ({exc})") from exc
        if self._tok.eos_token_id is None:
            raise ModelError(f"{path}: the tokenizer defines no eos token")

    @property
    def eos_token_id(self) -> int:
        """Id of the end-of-sequence token."""
        return int(self._tok.eos_token_id)

    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included."""
        return len(self._tok)

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` without added special tokens."""
        return list(self._tok.encode(text, add_special_tokens=False))

    def decode(self, token_ids: Sequence[int]) -> str:
        """Text of ``token_ids`` with special tokens skipped."""
        return str(self._tok.decode(list(token_ids), skip_special_tokens=True))

    @property
    def has_chat_template(self) -> bool:
        """Whether the tokenizer directory defines a chat template."""
        return bool(getattr(self._tok, "chat_template", None))

    def apply_chat_template(self, messages: Sequence[dict[str, str]]) -> str:
        """The tokenizer's own chat template applied to ``messages``, ending with the prompt
        for the assistant's turn."""
        return str(self._tok.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=True
        ))


def load_tokenizer(path: Path | None = None) -> Tokenizer:
    """``ByteTokenizer()`` when ``path`` is None, else the HF tokenizer in local dir ``path``.

    Raises
    ------
    ModelError
        If ``path`` is not a directory or holds no loadable tokenizer.
    """
    if path is None:
        return ByteTokenizer()
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"{path}: not a tokenizer directory")
    return HFTokenizer(path)
