"""The questions VideoPhy-2's AutoEval was trained on, word for word.

The evaluator only answers reliably to these exact strings (REFERENCE.md §2, Hritikbansal/videophy
`VIDEOPHY2/template.py`), so every judge asks them: the AutoEval port feeds the whole template with the
video's tokens at `VIDEO_PLACEHOLDER`; a chat VLM or an API judge sends the video its own way and reuses
the question after the placeholder (`split_template`).
"""

from __future__ import annotations

VIDEO_PLACEHOLDER = "<|video|>"

_PREAMBLE = (
    "The following is a conversation between a curious human and an AI assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions.\n"
    f"Human: {VIDEO_PLACEHOLDER}\n"
)

SA_TEMPLATE = (
    _PREAMBLE
    + "Human: Does this video match the description: \"{caption}\"? "
    "Please rate the video on a scale from 1 to 5, where 5 indicates a perfect match and 1 indicates no relevance.\n"
    "AI: "
)

PC_TEMPLATE = (
    _PREAMBLE
    + "Human: Does this video adhere to the physical laws? "
    "Rate the video on a scale from 1 to 5, where 5 means full compliance and 1 means significant violations.\n"
    "AI: "
)

# The space before the last newline is in the training data too.
RULE_TEMPLATE = (
    _PREAMBLE
    + "Human: Does the video follow the physical rule: \"{rule}\"?\n"
    "Choose 0 if not, 1 if valid, or 2 if indeterminate. \n"
    "AI: "
)


def sa_prompt(caption: str) -> str:
    """Semantic adherence: does the video show `caption`? (answer 1..5)"""
    return SA_TEMPLATE.format(caption=caption)


def pc_prompt() -> str:
    """Physical commonsense: does the video obey physics? (answer 1..5)"""
    return PC_TEMPLATE


def rule_prompt(rule: str) -> str:
    """Does the video follow `rule`? (answer 0 no, 1 yes, 2 cannot tell)"""
    return RULE_TEMPLATE.format(rule=rule)


def split_template(prompt: str) -> tuple[str, str]:
    """(text before the video, text after it) of a filled template; the question is the second part."""
    before, found, after = prompt.partition(VIDEO_PLACEHOLDER)
    if not found or VIDEO_PLACEHOLDER in after:
        raise ValueError(f"a judge prompt needs exactly one {VIDEO_PLACEHOLDER} where the video goes")
    return before, after
