"""The refiner's output contract and its one parser.

A refiner answers `<think>reasoning</think><prompt>video prompt</prompt>`. Real model output bends
that in many ways (fences, chatter around the tags, a missing closing tag when generation stops,
repeated or nested tags), so the parser repairs what it safely can, says what it repaired, and
reports a failure — never raises — when no usable prompt is there. Nodes, the CLI, training rewards
and evaluation all parse through `parse_output`.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass, field

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
PROMPT_OPEN, PROMPT_CLOSE = "<prompt>", "</prompt>"

_TAG = r"<\s*{slash}\s*{name}\s*>"


def _tag(name: str, closing: bool) -> re.Pattern:
    return re.compile(_TAG.format(slash="/" if closing else "", name=name), re.IGNORECASE)


_THINK_OPEN, _THINK_CLOSE = _tag("think", False), _tag("think", True)
_PROMPT_OPEN, _PROMPT_CLOSE = _tag("prompt", False), _tag("prompt", True)
_ANY_TAG = re.compile(r"<\s*/?\s*(?:think|prompt)\s*>", re.IGNORECASE)
# A contract tag cut off by the end of generation (`</pro`, `</prompt`): never part of the prompt.
_PARTIAL_TAG_AT_END = re.compile(
    r"<\s*/?\s*(?:p(?:r(?:o(?:m(?:p(?:t)?)?)?)?)?|t(?:h(?:i(?:n(?:k)?)?)?)?)?\s*$", re.IGNORECASE
)
_FENCE = re.compile(r"^\s*```[\w-]*\s*$", re.MULTILINE)
_PLACEHOLDERS = {"the rewritten video prompt", "your physical reasoning", "...", "…"}

# A prompt this similar to the reasoning is the reasoning pasted twice, not a video description.
_ECHO_SIMILARITY = 0.9


@dataclass(frozen=True)
class ParsedOutput:
    ok: bool
    prompt: str  # empty when not ok
    reasoning: str
    error: str | None = None  # why parsing failed, when it did
    repairs: tuple[str, ...] = field(default=())  # what was fixed on the way, e.g. "missing </prompt>"


def _clean(text: str) -> str:
    """Tag-free, fence-free text on one line, without wrapping quotes."""
    text = _ANY_TAG.sub(" ", _FENCE.sub(" ", text))
    text = re.sub(r"\s+", " ", text).strip()
    for quote in ('"', "'", "“”", "`"):
        if _wrapped_in(text, quote[0], quote[-1]):
            text = text[1:-1].strip()
    return text


def _wrapped_in(text: str, opening: str, closing: str) -> bool:
    """Whether the first and last characters are one pair of quotes around the whole text.

    `"A ball" falls "fast"` starts and ends with a quote but is not wrapped; an apostrophe inside a
    word (`cat's`) is not a quote mark.
    """
    if len(text) < 2 or text[0] != opening or text[-1] != closing:
        return False
    inner = text[1:-1]
    for i, ch in enumerate(inner):
        if ch in (opening, closing):
            within_word = 0 < i < len(inner) - 1 and inner[i - 1].isalnum() and inner[i + 1].isalnum()
            if not within_word:
                return False
    return True


def _prompt_blocks(text: str) -> list[tuple[str, int, bool]]:
    """(content, start offset, closed) for every `<prompt>` block, outermost nesting flattened."""
    blocks = []
    for opening in _PROMPT_OPEN.finditer(text):
        closing = _PROMPT_CLOSE.search(text, opening.end())
        end = closing.start() if closing else len(text)
        blocks.append((text[opening.end():end], opening.start(), closing is not None))
    return blocks


def _is_placeholder(prompt: str) -> bool:
    """Empty, only punctuation (`...`, a lone quote), or a placeholder copied from the instruction."""
    if all(unicodedata.category(ch)[0] in "PZ" for ch in prompt):
        return True
    return prompt.lower().rstrip(".") in _PLACEHOLDERS


def _reasoning(text: str, prompt_start: int) -> str:
    """The text of the last `<think>` block before the prompt (or everything before it)."""
    head = text[:prompt_start]
    closes = list(_THINK_CLOSE.finditer(head))
    end = closes[-1].start() if closes else len(head)
    opens = [m for m in _THINK_OPEN.finditer(head) if m.end() <= end]
    start = opens[-1].end() if opens else 0
    return _clean(head[start:end])


def parse_output(text: str) -> ParsedOutput:
    """Find the reasoning and the video prompt in a refiner's answer."""
    repairs: list[str] = []
    cut_tag = _PARTIAL_TAG_AT_END.search(text)
    if cut_tag:
        text = text[: cut_tag.start()]
        repairs.append("cut-off tag at the end")
    if _FENCE.search(text):
        repairs.append("markdown fences")
    blocks = [(_clean(body), start, closed) for body, start, closed in _prompt_blocks(text)]
    usable = [b for b in blocks if not _is_placeholder(b[0])]
    if len(blocks) > 1:
        repairs.append(f"{len(blocks)} <prompt> openings")

    if usable:
        prompt, start, closed = usable[-1]  # a model that revises itself means its last version
        if not closed:
            repairs.append("missing </prompt>")
    else:
        closing = _PROMPT_CLOSE.search(text)
        after_think = list(_THINK_CLOSE.finditer(text))
        if blocks:
            reasoning = _reasoning(text, blocks[-1][1])
            return ParsedOutput(False, "", reasoning, "the <prompt> block is empty", tuple(repairs))
        if closing:
            # `</prompt>` without an opening: the prompt is what lies between the reasoning and it
            start = after_think[-1].end() if after_think and after_think[-1].end() <= closing.start() else 0
            prompt = _clean(text[start:closing.start()])
            repairs.append("missing <prompt>")
        elif after_think and _clean(text[after_think[-1].end():]):
            # reasoning closed, then an untagged answer
            start = after_think[-1].end()
            prompt = _clean(text[start:])
            repairs.append("untagged prompt after </think>")
        else:
            reasoning = _clean(text[_THINK_OPEN.search(text).end():] if _THINK_OPEN.search(text) else text)
            return ParsedOutput(False, "", reasoning, "no <prompt> in the answer", tuple(repairs))
        if _is_placeholder(prompt):
            return ParsedOutput(False, "", _reasoning(text, start), "the prompt is empty", tuple(repairs))

    reasoning = _reasoning(text, start)
    if reasoning and _echoes(prompt, reasoning):
        return ParsedOutput(False, "", reasoning, "the prompt only repeats the reasoning", tuple(repairs))
    if not reasoning:
        repairs.append("no reasoning")
    return ParsedOutput(True, prompt, reasoning, None, tuple(repairs))


def _echoes(prompt: str, reasoning: str) -> bool:
    a, b = prompt.lower(), reasoning.lower()
    return a == b or difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= _ECHO_SIMILARITY


def format_output(reasoning: str, prompt: str) -> str:
    """An answer in the contract's canonical form (what training targets look like)."""
    return f"{THINK_OPEN}{reasoning.strip()}{THINK_CLOSE}\n{PROMPT_OPEN}{prompt.strip()}{PROMPT_CLOSE}"
