"""Turning a judge's answer into a score: the one parser every judge uses, and the continuous score.

`parse_score` reproduces VideoPhy-2's `inference.py` exactly, quirks included, so that scores compare
with the published ones: the lower-cased answer is searched for each of "zero".."five", then "0".."5", in
that order, and the first that occurs anywhere wins. So "none" reads as 1 (it contains "one"), "3/5" as 3
("3" is tried before "5") and "one of the best, 5" as 1. Only when none occurs, all the answer's digits
are joined into one number, kept if it is 0..5; anything else scores 0.

`expected_score` is the continuous alternative: the expected value of the answer-token distribution at the
first answer position, which ranks videos more finely than the integer (ties are common).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# Dict order is the reference's search order: number words first, then digits.
_NUMBERS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
            "0": 0, "1": 1, "2": 2, "3": 3, "4": 4, "5": 5}

#: what the answer tokens of a 1..5 rating (SA, PC) and of a rule verdict (0 no, 1 yes, 2 cannot tell) mean
SCALE_VALUES = (1, 2, 3, 4, 5)
RULE_VALUES = (0, 1, 2)


def parse_score(answer: str) -> int:
    """The integer the reference reads from `answer` (see the module docstring); 0 when it reads none."""
    text = answer.lower().strip()
    for word, value in _NUMBERS.items():
        if word in text:
            return value
    digits = "".join(c for c in text if c.isdigit())
    try:
        number = int(digits) if digits else -1
    except ValueError:  # digits int() cannot read ("²"); the reference crashes here, we read nothing
        return 0
    return number if number in _NUMBERS.values() else 0


def expected_score(log_scores: Sequence[float], values: Sequence[int] = SCALE_VALUES) -> float:
    """Expected value of the softmax over `log_scores`, the logits (or log-probabilities) of the tokens that
    stand for `values`, in the same order. The softmax renormalises over just these tokens, so whatever
    probability the model puts elsewhere does not count; -inf marks a token the judge could not see."""
    scores = [float(s) for s in (log_scores.tolist() if hasattr(log_scores, "tolist") else log_scores)]
    if len(scores) != len(values):
        raise ValueError(f"got {len(scores)} answer-token scores for {len(values)} values")
    top = max(scores)
    if not math.isfinite(top):
        raise ValueError("no answer token has a finite score")
    weights = [math.exp(s - top) for s in scores]
    return sum(w * v for w, v in zip(weights, values)) / sum(weights)
