"""`AutoEvalJudge`: VideoPhy-2's AutoEval behind the `Judge` protocol.

Per video it asks the SA question with the caption, the PC question and one question per rule, as the
reference does one prompt at a time (same frame indices, a video file's pixels as decord decodes them,
prompt ids, greedy answers), plus the expected score at the first answer position. Beyond the reference:

- a video's 65 tokens are computed once and shared by all its prompts (`share_video_encoding`; off, every
  prompt encodes the video again as the reference does); the tokens are the same either way;
- several videos (`batch_size`) and all their prompts run together, left-padded and masked, which changes
  only float rounding (in bf16 that can flip an exact tie between two tokens);
- a caption or rule too long for LLaMA's 2048 positions (prompt + 255 answer tokens) is cut to fit, with a
  note in `Judgement.notes`; the reference would run past the positions the model was trained on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ...infra.devices import PRECISIONS, resolve_device, torch_dtype
from ...infra.lifecycle import LazyWeights
from ...infra.progress import OptionalProgress
from ..base import Answer, JudgeLoadError, Judgement, RuleVerdict, Video, check_request
from ..frames import autoeval_frames, autoeval_pixels
from ..scores import RULE_VALUES, SCALE_VALUES, expected_score, parse_score
from ..spec import FOLDER_JUDGE, folder_config
from ..templates import pc_prompt, rule_prompt, sa_prompt
from .config import is_autoeval
from .decoding import MAX_LENGTH, greedy_decode
from .loading import load_autoeval
from .model import AutoEvalModel
from .tokenizer import PromptIds, PromptTokenizer


@dataclass(frozen=True)
class _Question:
    video: int  # index in the batch
    kind: str  # "sa", "pc" or "rule"
    prompt: PromptIds
    rule: str = ""


class AutoEvalJudge:
    name = "videophy2"
    in_process = True
    info = FOLDER_JUDGE

    def __init__(self, model: AutoEvalModel, tokenizer: PromptTokenizer, *, folder: str | None = None,
                 share_video_encoding: bool = True, max_length: int = MAX_LENGTH):
        self._weights = LazyWeights(self._load_again, model)
        self.tokenizer = tokenizer
        self.folder = folder
        self.share_video_encoding = share_video_encoding
        #: the reference's 256 counting the leading <s>; lower only bounds answers that never end (random
        #: test models), the real judge stops after a digit
        self.max_length = max_length
        self._device, self._dtype = model.device, model.dtype
        self._video_tokens = model.config.video_tokens
        self._positions = model.config.text["max_position_embeddings"]
        self._answer_ids = {values: [tokenizer.token_id(str(v)) for v in values]
                            for values in (SCALE_VALUES, RULE_VALUES)}

    @classmethod
    def recognises(cls, folder: str) -> bool:
        return is_autoeval(folder_config(folder))

    @classmethod
    def load(cls, folder: str | os.PathLike, *, device: str | torch.device = "auto", dtype: str = "auto",
             frames: int | None = None, share_video_encoding: bool = True,
             max_length: int = MAX_LENGTH) -> AutoEvalJudge:
        """The judge from the released folder (videophysics/videophy_2_auto). dtype "auto" is bf16, the released
        precision and what the reference runs; fp16 and fp32 are there for GPUs without bf16 and for checks.
        `frames` is the folder judges' option (`FOLDER_JUDGE`); the AutoEval's are fixed, so only None fits."""
        if frames is not None:
            raise JudgeLoadError("VideoPhy-2's AutoEval always looks at the 32 frames it was trained on: leave out "
                                 "the frame count")
        if dtype == "auto":
            dtype = "bf16"
        if dtype not in PRECISIONS:
            raise ValueError(f"unknown dtype {dtype!r}; choose one of: auto, {', '.join(PRECISIONS)}")
        model, tokenizer = load_autoeval(folder, device=resolve_device(device), dtype=torch_dtype(dtype))
        return cls(model, tokenizer, folder=os.fspath(folder), share_video_encoding=share_video_encoding,
                   max_length=max_length)

    def modules(self) -> dict[str, torch.nn.Module]:
        """The torch modules holding the weights, for ComfyUI's model management to move."""
        return {"judge": self.model}

    def release(self) -> None:
        """Drop the weights; the next `judge` call loads them again from the folder."""
        self._weights.release()

    @property
    def model(self) -> AutoEvalModel:
        return self._weights()

    @property
    def loaded(self) -> bool:
        return self._weights.loaded

    def judge(self, videos: Sequence[Video], captions: Sequence[str], *, rules: Sequence[Sequence[str]] | None = None,
              batch_size: int = 1, progress: OptionalProgress = None) -> list[Judgement]:
        check_request(videos, captions, rules, batch_size)
        if rules is not None and any(isinstance(video_rules, str) for video_rules in rules):
            raise ValueError("rules[i] is the list of rules for video i, not one rule: wrap each string in a list")
        model = self.model
        judgements: list[Judgement] = []
        for start in range(0, len(videos), batch_size):
            stop = min(start + batch_size, len(videos))
            batch_rules = [list(rules[i]) if rules is not None else [] for i in range(start, stop)]
            judgements.extend(self._judge_batch(model, videos[start:stop], captions[start:stop], batch_rules))
            if progress is not None:
                for done in range(start + 1, stop + 1):
                    progress(done, len(videos))
        return judgements

    # ------------------------------------------------------------------------------------------ internals

    def _load_again(self) -> AutoEvalModel:
        if self.folder is None:
            raise RuntimeError("the judge was released and has no folder to load it from again")
        return load_autoeval(self.folder, device=self._device, dtype=self._dtype)[0]

    @torch.inference_mode()
    def _judge_batch(self, model: AutoEvalModel, videos: Sequence[Video], captions: Sequence[str],
                     rules: list[list[str]]) -> list[Judgement]:
        sampled = [autoeval_frames(video) for video in videos]
        pixels = torch.stack([autoeval_pixels(frames) for frames, _ in sampled])
        questions, notes = self._questions(captions, rules)
        embeds = self._embed(model, pixels, questions)
        decoded = greedy_decode(model.language_model, embeds, eos_id=self.tokenizer.eos_id,
                                max_length=self.max_length)

        answers: list[list[tuple[_Question, Answer]]] = [[] for _ in videos]
        for question, ids, logits in zip(questions, decoded.ids, decoded.first_logits):
            values = RULE_VALUES if question.kind == "rule" else SCALE_VALUES
            text = self.tokenizer.decode(ids)
            answer = Answer(parse_score(text), expected_score(logits[self._answer_ids[values]], values), text)
            answers[question.video].append((question, answer))
        return [self._judgement(captions[i], answers[i], sampled[i][1], notes[i]) for i in range(len(videos))]

    def _questions(self, captions: Sequence[str],
                   rules: list[list[str]]) -> tuple[list[_Question], list[list[str]]]:
        questions: list[_Question] = []
        notes: list[list[str]] = [[] for _ in captions]
        for video, (caption, video_rules) in enumerate(zip(captions, rules)):
            prompt, note = self._fit(sa_prompt, caption, "caption")
            questions.append(_Question(video, "sa", prompt))
            notes[video] += note
            questions.append(_Question(video, "pc", self.tokenizer.prompt(pc_prompt(), self._video_tokens)))
            for rule in video_rules:
                prompt, note = self._fit(rule_prompt, rule, "rule")
                questions.append(_Question(video, "rule", prompt, rule))
                notes[video] += note
        return questions, notes

    def _fit(self, fill: Callable[[str], str], text: str, what: str) -> tuple[PromptIds, list[str]]:
        """The prompt of `fill(text)`, with `text` cut short when the prompt and a full answer would not fit
        in the LLaMA's positions."""
        room = self._positions - (self.max_length - 1)
        prompt = self.tokenizer.prompt(fill(text), self._video_tokens)
        kept = text
        while len(prompt) > room and kept:
            # Cut in proportion to the excess (at least one character) and measure again.
            kept = kept[:min(len(kept) - 1, int(len(kept) * room / len(prompt)))]
            prompt = self.tokenizer.prompt(fill(kept), self._video_tokens)
        if len(prompt) > room:
            raise ValueError(f"the judge's prompt does not fit in {self._positions} positions even without the {what}")
        if kept == text:
            return prompt, []
        return prompt, [f"{what} cut to {len(kept)} of {len(text)} characters to fit the judge's "
                        f"{self._positions}-token context"]

    def _embed(self, model: AutoEvalModel, pixels: torch.Tensor, questions: list[_Question]) -> list[torch.Tensor]:
        if self.share_video_encoding:
            video_tokens = model.encode_videos(pixels)
            per_question = [video_tokens[q.video] for q in questions]
        else:
            per_question = [model.encode_videos(pixels[q.video:q.video + 1])[0] for q in questions]
        return [model.embed_prompt(q.prompt.before, tokens, q.prompt.after)
                for q, tokens in zip(questions, per_question)]

    @staticmethod
    def _judgement(caption: str, answers: list[tuple[_Question, Answer]], frames: int, notes: list[str]) -> Judgement:
        by_kind = {q.kind: a for q, a in answers if q.kind != "rule"}
        verdicts = tuple(RuleVerdict(q.rule, a) for q, a in answers if q.kind == "rule")
        return Judgement(caption=caption, sa=by_kind["sa"], pc=by_kind["pc"], rules=verdicts,
                         judge=AutoEvalJudge.name, frames=frames, notes=tuple(notes))
