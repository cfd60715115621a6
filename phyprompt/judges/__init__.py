"""Physics judges behind one protocol (`base.Judge`), picked by kind from a registry and opened from a
`JudgeSpec`.

Importing this package is cheap: a judge's module (and torch, transformers) is imported when it is opened.
"""

from __future__ import annotations

from .base import JOINT_THRESHOLD, JUDGES, Answer, Judge, JudgeLoadError, Judgement, RuleVerdict, Video, check_request
from .spec import JudgeSpec

__all__ = ["JOINT_THRESHOLD", "JUDGES", "Answer", "Judge", "JudgeLoadError", "JudgeSpec", "Judgement",
           "RuleVerdict", "Video", "check_request", "judge_class"]


def judge_class(kind: str) -> type:
    return JUDGES.get(kind)
