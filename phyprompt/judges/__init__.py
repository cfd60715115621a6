"""Physics judges behind one protocol (`base.Judge`), picked by kind from a registry.

Importing this package is cheap: a judge's module (and torch, transformers) is imported when it is opened.
"""

from __future__ import annotations

from .base import JOINT_THRESHOLD, JUDGES, Answer, Judge, Judgement, RuleVerdict, Video, check_request
from .opening import JudgeLoadError, open_judge

__all__ = ["JOINT_THRESHOLD", "JUDGES", "Answer", "Judge", "JudgeLoadError", "Judgement",
           "RuleVerdict", "Video", "check_request", "judge_class", "open_judge"]


def judge_class(kind: str) -> type:
    return JUDGES.get(kind)
