"""Physics judges behind one protocol (`base.Judge`), picked by kind from a registry.

Importing this package is cheap: a judge's module (and torch, transformers) is imported when it is opened.
"""

from __future__ import annotations

import importlib

from .base import JOINT_THRESHOLD, Answer, Judge, Judgement, RuleVerdict, Video, check_request
from .opening import JudgeLoadError, open_judge

# kind -> "module:Class", relative to this package; each class has `load(...)`
_REGISTRY = {
    "videophy2": "videophy2.judge:AutoEvalJudge",
    "vlm": "vlm:VLMJudge",
    "api": "api:APIJudge",
}
JUDGE_KINDS = tuple(_REGISTRY)

__all__ = ["JOINT_THRESHOLD", "JUDGE_KINDS", "Answer", "Judge", "JudgeLoadError", "Judgement",
           "RuleVerdict", "Video", "check_request", "judge_class", "open_judge"]


def judge_class(kind: str) -> type:
    try:
        module_name, class_name = _REGISTRY[kind].split(":")
    except KeyError:
        raise ValueError(f"unknown judge kind {kind!r}; choose one of: {', '.join(JUDGE_KINDS)}") from None
    return getattr(importlib.import_module(f".{module_name}", __package__), class_name)

