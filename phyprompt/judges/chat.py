"""What the chat judges (`vlm` in this process, `api` on a server) ask, and how their answers become
`Judgement`s, so both ask and score the same way.

Each question is one user message: the video (frames), then the question that follows the video in
AutoEval's template (templates.py), word for word, without the transcript's "Human:"/"AI:" turns, which a
chat model's own template replaces. The answer is read by the one parser (`scores.parse_score`); the
continuous score is `scores.expected_score` over the answer tokens ("1".."5", or "0".."2" for a rule) at
the first answer position (`answer_position`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .base import Answer, Judgement, RuleVerdict
from .scores import RULE_VALUES, SCALE_VALUES, parse_score
from .templates import pc_prompt, rule_prompt, sa_prompt, split_template


@dataclass(frozen=True)
class Question:
    text: str
    #: what the answer tokens "1".."5" (or "0".."2") stand for, in order
    values: tuple[int, ...]


def question_text(prompt: str) -> str:
    """The question of a filled AutoEval template: the text after the video, its turns taken off."""
    after = split_template(prompt)[1].strip()
    return after.removeprefix("Human:").removesuffix("AI:").strip()


def questions(caption: str, rules: Sequence[str] = ()) -> list[Question]:
    """SA, PC, then one per rule: what a judge asks about one video."""
    return [Question(question_text(sa_prompt(caption)), SCALE_VALUES),
            Question(question_text(pc_prompt()), SCALE_VALUES),
            *(Question(question_text(rule_prompt(rule)), RULE_VALUES) for rule in rules)]


def answer_position(top_tokens: Sequence[str], values: Sequence[int]) -> int:
    """Where the expected score is read: the first answer position whose most likely token (`top_tokens`,
    one per position) is an answer token, as when a chat model writes "I'd rate it 4"; the first
    position when there is none (AutoEval's rule; the answer then holds no digit to weigh)."""
    answers = {str(value) for value in values}
    return next((i for i, token in enumerate(top_tokens) if token.strip() in answers), 0)


def judgement(caption: str, rules: Sequence[str], answers: Sequence[tuple[str, float | None]], *, judge: str,
              frames: int, shown: int) -> Judgement:
    """One video's `Judgement` from its (answer text, expected score) pairs in `questions` order; `frames`
    the video had, `shown` the judge looked at."""
    sa, pc, *verdicts = [Answer(parse_score(text), expected, text) for text, expected in answers]
    # fewer frames than `shown` is normal (frames repeat, as in the reference), but a still image has no
    # motion to judge physics by
    notes = (f"the video is a single frame, shown {shown} times: the judge saw no motion",) if frames == 1 else ()
    return Judgement(caption=caption, sa=sa, pc=pc, judge=judge, frames=frames, notes=notes,
                     rules=tuple(RuleVerdict(rule, answer) for rule, answer in zip(rules, verdicts)))
