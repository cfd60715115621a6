"""What the chat judges (`vlm` in this process, `api` on a server) ask, and how their answers become
`Judgement`s, so both ask and score the same way.

Each question is one user message: the video (frames), then the question that follows the video in
AutoEval's template (templates.py), word for word, without the transcript's "Human:"/"AI:" turns, which a
chat model's own template replaces. The answer is read by the one parser (`scores.parse_score`); the
continuous score is `scores.expected_score` over the answer tokens ("1".."5", or "0".."2" for a rule) at
the first answer position (`answer_position`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from .base import Answer, Judgement, RuleVerdict
from .scores import RULE_VALUES, SCALE_VALUES, expected_score, parse_score
from .templates import pc_prompt, rule_prompt, sa_prompt, split_template

log = logging.getLogger(__name__)


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


def single_token_ids(tokenizer, values: Sequence[int]) -> list[int] | None:
    """The ids of the tokens "1".."5" (or "0".."2"); None when the vocabulary has no such single tokens,
    and the judge then gives no expected score."""
    ids = tokenizer.convert_tokens_to_ids([str(value) for value in values])
    if any(i is None or i == tokenizer.unk_token_id or tokenizer.decode([i]).strip() != str(v)
           for i, v in zip(ids, values)):
        log.warning("the tokenizer has no single tokens for %s: no expected scores", values)
        return None
    return ids


def generated_answer(tokenizer, tokens, logits, row: int, answer_ids: Sequence[int] | None,
                     values: Sequence[int]) -> tuple[str, float | None]:
    """(answer text, expected score) of one row of a greedy `generate`: `tokens` the new tokens [rows,
    steps], `logits` its per-step logits (`output_logits`: one [rows, vocabulary] per step), `answer_ids`
    the ids of `values`' tokens (`single_token_ids`; None: no expected score)."""
    text = tokenizer.decode(tokens[row], skip_special_tokens=True).strip()
    if answer_ids is None:
        return text, None
    pieces = [tokenizer.decode([token]) for token in tokens[row].tolist()]
    step = answer_position(pieces, values)
    return text, expected_score(logits[step][row, list(answer_ids)].float().cpu(), values)


def reply_answer(reply, values: Sequence[int]) -> tuple[str, float | None]:
    """(answer text, expected score) of a server's `endpoint.Reply`; the expected score needs the server's
    top tokens, and at least one answer token among them at the answer position."""
    if not reply.top_logprobs:
        return reply.text.strip(), None
    most_likely = [max(tops, key=tops.get) if tops else "" for tops in reply.top_logprobs]
    tops = reply.top_logprobs[answer_position(most_likely, values)]
    log_scores = [_log_sum([lp for token, lp in tops.items() if token.strip() == str(value)])
                  for value in values]  # "4" and " 4" are one answer
    if not math.isfinite(max(log_scores)):
        return reply.text.strip(), None
    return reply.text.strip(), expected_score(log_scores, values)


def _log_sum(log_probs: Sequence[float]) -> float:
    if not log_probs:
        return -math.inf
    top = max(log_probs)
    return top + math.log(sum(math.exp(lp - top) for lp in log_probs))


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
