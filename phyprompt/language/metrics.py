"""Parse rate: the share of a refiner's answers the project can use as they are.

An answer is usable when the output parser accepted it and its refined prompt fits the target's budget
without having been shortened: a fallback to the original prompt, a repaired-by-cutting prompt or one the
text encoder would truncate all count as failures. It needs no video model, so it is the first thing to
measure after fine-tuning (train.format_eval) and a cheap check anywhere else.

Light on purpose: it reads `Refinement` attributes only (`ok`, `error`, `shortened`, `over_budget`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ParseRate:
    """How many answers were usable out of how many, and why the others were not."""

    usable: int
    total: int
    failures: dict[str, int] = field(default_factory=dict)  # reason -> count, most common first

    @property
    def rate(self) -> float:
        """usable / total, 0.0 when there were no answers."""
        return self.usable / self.total if self.total else 0.0


def usable(refinement) -> bool:
    return refinement.ok and not refinement.shortened and not refinement.over_budget


def failure_reason(refinement) -> str:
    """Why an answer is not usable ("" when it is): the parser's error, or "over budget"."""
    if not refinement.ok:
        return refinement.error or "rejected"
    return "over budget" if refinement.shortened or refinement.over_budget else ""


def parse_rate(refinements: Iterable) -> ParseRate:
    total, reasons = 0, Counter()
    for refinement in refinements:
        total += 1
        if not usable(refinement):
            reasons[failure_reason(refinement)] += 1
    return ParseRate(usable=total - reasons.total(), total=total, failures=dict(reasons.most_common()))
