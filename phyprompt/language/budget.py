"""Token budgets: counting a prompt's tokens for a target's text encoder and shortening what does not fit.

A prompt longer than the encoder's limit is cut by the video pipeline without a word, so the refiner
checks the budget itself. Counting uses the encoder's real tokenizer when one is at hand; otherwise a
conservative estimate that over-counts rather than under-counts (see `EstimatedCounter`).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Protocol

from .targets import Target


class TokenCounter(Protocol):
    description: str

    def count(self, text: str) -> int:
        """Tokens the encoder will see for `text`, special tokens included."""


class EstimatedCounter:
    """A conservative token estimate for when the target's tokenizer is not available.

    Each run of letters/digits costs one token per started 4 characters (T5 and CLIP BPE average about
    4-5 characters per token on English prose, so this over-counts), each punctuation mark costs one,
    and every non-ASCII character costs its UTF-8 byte length (byte-level BPEs can spend a token per
    byte on CJK and emoji). The target's special tokens are added on top.
    """

    _pieces = re.compile(r"[A-Za-z0-9]+|[^\sA-Za-z0-9]")

    def __init__(self, special_tokens: int = 0):
        self.special_tokens = special_tokens
        self.description = "estimate"

    def count(self, text: str) -> int:
        total = self.special_tokens
        for piece in self._pieces.findall(text):
            if piece.isascii():
                total += math.ceil(len(piece) / 4) if piece[0].isalnum() else 1
            else:
                total += len(piece.encode("utf-8"))
        return total


class TokenizerCounter:
    """Counts with a real tokenizer (a transformers tokenizer or anything with the same call)."""

    def __init__(self, tokenizer, description: str | None = None):
        self.tokenizer = tokenizer
        self.description = description or f"tokenizer {type(tokenizer).__name__}"

    def count(self, text: str) -> int:
        # truncation off: we want the real length, not what the encoder would keep
        return len(self.tokenizer(text, truncation=False)["input_ids"])


def load_tokenizer_counter(folder: str | os.PathLike) -> TokenizerCounter:
    """A counter from a tokenizer folder (e.g. a diffusers pipeline's `tokenizer/`)."""
    from transformers import AutoTokenizer

    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"target tokenizer folder not found: {folder}")
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return TokenizerCounter(tokenizer, f"tokenizer {os.path.basename(os.path.normpath(folder))}")


def counter_for(target: Target, tokenizer=None) -> TokenCounter:
    """The best counter available for `target`: a real tokenizer if given, the estimate otherwise."""
    if tokenizer is None:
        return EstimatedCounter(target.special_tokens)
    if isinstance(tokenizer, (str, os.PathLike)):
        return load_tokenizer_counter(tokenizer)
    if hasattr(tokenizer, "count"):
        return tokenizer
    return TokenizerCounter(tokenizer)


@dataclass(frozen=True)
class Fitted:
    text: str
    tokens: int
    limit: int
    shortened: bool
    dropped: str  # the text that was removed, empty when nothing was


# Positions where a prompt may be cut, coarsest first: after a sentence, after a clause, between words.
_BOUNDARIES = (
    re.compile(r"[.!?。！？]+(?=\s|$)|[。！？]"),
    re.compile(r"[,;:，；：、]+(?=\s|$)|[，；：、]"),
    re.compile(r"\S(?=\s)"),
)


def fit_to_budget(text: str, counter: TokenCounter, limit: int) -> Fitted:
    """Shorten `text` to at most `limit` tokens, cutting at the last sentence, clause or word that fits.

    Whole sentences are kept when at least one fits; otherwise whole clauses of the first sentence;
    otherwise whole words. A word is never cut in half; if not even the first word fits, the result is
    empty (and `shortened` says so).
    """
    text = text.strip()
    tokens = counter.count(text)
    if tokens <= limit:
        return Fitted(text, tokens, limit, False, "")
    for boundary in _BOUNDARIES:
        kept = ""
        for match in boundary.finditer(text):
            candidate = _close_sentence(text[: match.end()])
            if counter.count(candidate) > limit:
                break
            kept, cut = candidate, match.end()
        if kept:
            return Fitted(kept, counter.count(kept), limit, True, text[cut:].strip())
    return Fitted("", 0, limit, True, text)


def _close_sentence(text: str) -> str:
    """End a shortened prompt with a full stop so it reads as finished, replacing a dangling comma."""
    text = text.rstrip().rstrip(",;:，；：、").rstrip()
    return text if not text or text[-1] in ".!?。！？" else text + "."


@dataclass(frozen=True)
class TokenUse:
    """How much of a text encoder's budget a prompt takes: the one "prompt too long" report, used by the
    nodes and the CLI alike."""

    tokens: int
    limit: int
    counter: str  # which tokenizer counted

    @property
    def over(self) -> bool:
        return self.tokens > self.limit

    def summary(self) -> str:
        return f"{self.tokens}/{self.limit} tokens ({self.counter})"

    def warning(self, what: str = "the prompt", reader: str = "the text encoder") -> str:
        """Why the end of the prompt will not reach the model; only meaningful when `over`."""
        return (f"{what} is {self.tokens} tokens ({self.counter}) and {reader} reads only {self.limit}; "
                "the rest is cut off")


def token_use(text: str, counter: TokenCounter, limit: int) -> TokenUse:
    return TokenUse(counter.count(text), limit, counter.description)
