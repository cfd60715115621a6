"""What every physics judge is and returns, without importing torch or transformers.

A judge watches a video and answers the questions VideoPhy-2's AutoEval was trained on: how well the video
matches its caption (semantic adherence, SA) and how well it obeys physics (physical commonsense, PC), each
1 to 5, and optionally whether it follows given physical rules (0 no, 1 yes, 2 cannot tell). It may run in
this process (`videophy2`: the AutoEval port; `vlm`: a transformers video-language model) or on a server
(`api`). The nodes, the CLI, training rewards and the evaluation hold it through the `Judge` protocol.

A video is frames `[T, H, W, 3]` in 0..1 (torch or numpy, ComfyUI's IMAGE batch) or the path of a video
file; each judge samples and resizes frames its own way (see `frames.py`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Protocol, Union

from ..infra.checkpoints import ModelFolderError
from ..infra.lifecycle import HoldsWeights
from ..infra.progress import OptionalProgress
from ..infra.registry import Registry

if TYPE_CHECKING:
    import numpy as np
    import torch

Video = Union["torch.Tensor", "np.ndarray", str, os.PathLike]

#: VideoPhy-2's joint success: both scores at least this
JOINT_THRESHOLD = 4

# kind -> "module:Class", relative to this package. Other packages add judge kinds as entry points in the group
# `phyprompt.judges`. Each class describes itself in `info` (an `infra.kinds.KindInfo`: its loader node, its
# source, its load options; `videophy2` and `vlm` share one, `spec.FOLDER_JUDGE`) and has `load(source,
# **options)`: the folder (or for a kind on a server, the `ServerSpec`) and the options of its description. A
# kind on disk has `recognises(folder) -> bool`: whether the folder's config.json is one of its models, which
# is how `spec.JudgeSpec` tells a folder's kind.
JUDGES = Registry("judge kind", __package__, {
    "videophy2": "videophy2.judge:AutoEvalJudge",
    "vlm": "vlm:VLMJudge",
    "api": "api:APIJudge",
}, group="phyprompt.judges")


class JudgeLoadError(ModelFolderError):
    """A judge could not be opened or loaded; the message says why and what to do."""


@dataclass(frozen=True)
class Answer:
    """One question put to the judge about one video."""

    #: the integer as the reference parses the answer: 1..5 for SA/PC, 0/1/2 for a rule (0 when unreadable)
    score: int
    #: the expected value over the probabilities of the answer tokens ("1".."5", or "0".."2" for a rule) at
    #: the first answer position; None when the judge cannot see token probabilities
    expected: float | None
    #: the judge's raw answer text
    text: str


@dataclass(frozen=True)
class RuleVerdict:
    rule: str
    answer: Answer

    @property
    def verdict(self) -> int:
        """0: the video breaks the rule, 1: it follows it, 2: cannot be determined."""
        return self.answer.score


@dataclass(frozen=True)
class Judgement:
    """A judge's scores for one video and its caption."""

    caption: str
    sa: Answer
    pc: Answer
    rules: tuple[RuleVerdict, ...] = ()
    judge: str = ""
    #: frames the video had before the judge sampled it
    frames: int = 0
    notes: tuple[str, ...] = field(default=())

    @property
    def joint(self) -> bool:
        return self.sa.score >= JOINT_THRESHOLD and self.pc.score >= JOINT_THRESHOLD

    def summary(self) -> str:
        """One line for people."""
        def score(answer: Answer) -> str:
            return f"{answer.score}" if answer.expected is None else f"{answer.score} ({answer.expected:.2f})"

        parts = [f"SA {score(self.sa)}", f"PC {score(self.pc)}", "joint yes" if self.joint else "joint no"]
        if self.rules:
            followed = sum(rule.verdict == 1 for rule in self.rules)
            parts.append(f"rules followed {followed}/{len(self.rules)}")
        parts.extend(self.notes)
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return asdict(self) | {"joint": self.joint, "summary": self.summary()}


class Judge(HoldsWeights, Protocol):
    """Scores videos against captions, and holds its weights as every model does (`lifecycle`).
    Implementations are registered by kind in `JUDGES`."""

    def judge(
        self,
        videos: Sequence[Video],
        captions: Sequence[str],
        *,
        rules: Sequence[Sequence[str]] | None = None,
        batch_size: int = 1,
        progress: OptionalProgress = None,
    ) -> list[Judgement]:
        """One `Judgement` per video, in order; `captions[i]` (and `rules[i]`, when given) belong to
        `videos[i]`. Videos are judged `batch_size` at a time; `progress(done, total)` is called after each
        video and may raise to cancel, which stops before the next batch."""



def check_request(videos: Sequence, captions: Sequence[str], rules: Sequence[Sequence[str]] | None,
                  batch_size: int) -> None:
    """The arguments every judge rejects the same way, with a message that says what to change."""
    if len(videos) != len(captions):
        raise ValueError(f"got {len(videos)} videos but {len(captions)} captions: give one caption per video")
    if rules is not None and len(rules) != len(videos):
        raise ValueError(f"got {len(videos)} videos but {len(rules)} rule lists: give one list per video")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    for i, caption in enumerate(captions):
        if not caption or not caption.strip():
            where = "the caption" if len(captions) == 1 else f"caption {i + 1}"
            raise ValueError(f"{where} is empty: say what the video should show")
