"""A trivial judge kind, installed only for the tests (tests/plugins is on their path, and its dist-info declares
the `phyprompt.judges` entry point). It is what a third-party judge looks like: one module and one entry point,
and with no change to the nodes, the CLI or phyprompt/commands it gets its ComfyUI loader node
(PhyPromptLoadToyJudge), its command-line option (`--strictness`), and is the kind of any judge folder whose
config.json is its own (`recognises`), for `phyprompt judge --judge`, `phyprompt eval --judge` and recipes.

Its "model" is a folder whose config.json names it and holds a motion threshold. SA grows with the caption's
words; PC is 5 for a calm video and 2 for a jumpy one (mean change between the frames it samples, above the
threshold, halved when strict).
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch

from phyprompt.infra.devices import resolve_device
from phyprompt.infra.kinds import DEVICE, KindInfo, LoadOption, ModelFiles
from phyprompt.infra.lifecycle import LazyWeights
from phyprompt.judges import Answer, JudgeLoadError, Judgement, RuleVerdict, check_request
from phyprompt.judges.frames import sample_frames

MODEL_TYPE = "phyprompt-toy-judge"
FRAMES = 4


class ToyJudge:
    in_process = True
    info = KindInfo(
        source=ModelFiles("judge", ("judges",), help="A toy judge folder under models/judges."),
        options=(LoadOption("strictness", "lenient", ("lenient", "strict"), help="strict: half the motion passes."),
                 DEVICE),
        node_id="PhyPromptLoadToyJudge", display_name="Load Toy Judge", search_aliases=("toy judge",),
        description="A judge for tests: scores a video by its caption's length and how calm its frames are.",
    )

    def __init__(self, folder: str, strictness: str, load):
        self.name = os.path.basename(os.path.normpath(folder))
        self.strict = strictness == "strict"
        self._weights = LazyWeights(load, load())

    @classmethod
    def recognises(cls, folder: str) -> bool:
        try:
            with open(os.path.join(folder, "config.json"), encoding="utf-8") as handle:
                return json.load(handle).get("model_type") == MODEL_TYPE
        except (OSError, ValueError, AttributeError):
            return False

    @classmethod
    def load(cls, folder: str, *, strictness: str = "lenient", device: str = "auto") -> ToyJudge:
        if not cls.recognises(folder):
            raise JudgeLoadError(f"{folder} is not a toy judge folder")
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as handle:
            threshold = float(json.load(handle)["threshold"])

        def weights() -> torch.nn.Module:
            module = torch.nn.Module()
            module.register_buffer("threshold", torch.tensor(threshold))
            return module.to(resolve_device(device))

        return cls(folder, strictness, weights)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"threshold": self._weights()}

    def release(self) -> None:
        self._weights.release()

    def judge(self, videos, captions, *, rules=None, batch_size: int = 1, progress=None) -> list[Judgement]:
        check_request(videos, captions, rules, batch_size)
        threshold = float(self._weights().threshold) / (2 if self.strict else 1)
        results = []
        for i, (video, caption) in enumerate(zip(videos, captions)):
            frames, total = sample_frames(video, FRAMES)
            motion = float(np.abs(np.diff(frames.astype(np.float32), axis=0)).mean()) / 255
            sa = min(5, 1 + len(caption.split()) // 2)
            pc = 5 if motion <= threshold else 2
            verdicts = tuple(RuleVerdict(rule, Answer(1, None, "1")) for rule in (rules[i] if rules else ()))
            results.append(Judgement(caption, Answer(sa, None, str(sa)), Answer(pc, None, str(pc)), verdicts,
                                     judge=self.name, frames=total))
            if progress is not None:
                progress(i + 1, len(videos))
        return results


def write_toy_judge(folder: str | os.PathLike, threshold: float = 0.2) -> str:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as handle:
        json.dump({"model_type": MODEL_TYPE, "threshold": threshold}, handle)
    return str(folder)
