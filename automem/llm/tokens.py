"""Counting prompt tokens on the client, so every prompt fits the model's context window."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Protocol


class TokenCounter(Protocol):
    """Counts the tokens of a text as the served model's tokenizer would (or over-estimates them)."""

    def count(self, text: str) -> int: ...


class ApproxTokenCounter:
    """A conservative estimate: ``ceil(utf8 bytes / bytes_per_token)`` plus a per-message allowance.

    Byte-level BPE tokenizers average 3.5-4.5 bytes per token on English and fewer on ASCII maps; 2.5 keeps the
    estimate above the real count for the text automem sends, at the price of some unused context.
    """

    def __init__(self, bytes_per_token: float = 2.5) -> None:
        self.bytes_per_token = bytes_per_token

    def count(self, text: str) -> int:
        return math.ceil(len(text.encode()) / self.bytes_per_token)


class HFTokenCounter:
    """The model's own tokenizer (``tokenizer.json`` of a Hugging Face model folder), via ``tokenizers``."""

    def __init__(self, tokenizer_json: str | Path) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(tokenizer_json))

    @classmethod
    def from_model_dir(cls, model_dir: str | Path) -> HFTokenCounter:
        return cls(Path(model_dir) / "tokenizer.json")

    def count(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids)


# Chat templates add a few tokens per message (role markers, separators).
PER_MESSAGE_TOKENS = 6


def count_messages(counter: TokenCounter, messages: list[dict[str, str]]) -> int:
    """Tokens of a chat prompt: content plus the template's per-message overhead."""
    return sum(counter.count(m["content"]) + PER_MESSAGE_TOKENS for m in messages) + 3
