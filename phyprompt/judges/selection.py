"""Best of N: which of several judged videos to keep, and a report of every candidate's scores.

Used by the Best-of-N nodes and by anyone ranking renders of one prompt. A candidate's scores are the
judge's continuous ones (the expected value over the answer tokens) where it has them, else the parsed
integers; joint success uses the integers, as VideoPhy-2 does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .base import Judgement

#: how the best candidate is chosen; ties go to the earlier candidate (the lower seed)
CRITERIA = {
    "joint": "joint success (SA ≥ 4 and PC ≥ 4) first, then the mean of SA and PC",
    "pc": "physical commonsense, then SA",
    "sa": "semantic adherence, then PC",
    "weighted": "sa_weight · SA + (1 − sa_weight) · PC",
}


@dataclass(frozen=True)
class Candidate:
    sa: float
    pc: float
    joint: bool

    @classmethod
    def of(cls, judgement: Judgement) -> "Candidate":
        def value(answer):
            return float(answer.score if answer.expected is None else answer.expected)

        return cls(value(judgement.sa), value(judgement.pc), judgement.joint)


def _key(candidate: Candidate, by: str, sa_weight: float) -> tuple[float, ...]:
    if by == "joint":
        return (float(candidate.joint), (candidate.sa + candidate.pc) / 2)
    if by == "pc":
        return (candidate.pc, candidate.sa)
    if by == "sa":
        return (candidate.sa, candidate.pc)
    return (sa_weight * candidate.sa + (1 - sa_weight) * candidate.pc,)


def best(candidates: Sequence[Candidate], by: str = "joint", sa_weight: float = 0.5) -> int:
    """The index of the best candidate by the criterion `by` (one of CRITERIA)."""
    if by not in CRITERIA:
        raise ValueError(f"unknown criterion {by!r}; choose one of: {', '.join(CRITERIA)}")
    if not candidates:
        raise ValueError("there is nothing to choose from: no candidates were judged")
    if not 0 <= sa_weight <= 1:
        raise ValueError(f"sa_weight must be between 0 and 1, not {sa_weight}")
    keys = [_key(c, by, sa_weight) for c in candidates]
    return max(range(len(candidates)), key=lambda i: (keys[i], -i))


def report(candidates: Sequence[Candidate], chosen: int, by: str, labels: Sequence[str] = ()) -> str:
    """One line per candidate (its scores, the chosen one marked), for people."""
    lines = [f"best of {len(candidates)} by {by}: candidate {chosen + 1}"]
    for i, c in enumerate(candidates):
        mark = "→" if i == chosen else " "
        label = f"  {labels[i]}" if i < len(labels) and labels[i] else ""
        lines.append(f"{mark} {i + 1}: SA {c.sa:.2f}, PC {c.pc:.2f}, joint {'yes' if c.joint else 'no'}{label}")
    return "\n".join(lines)
