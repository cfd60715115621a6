"""The VLM judge: a transformers video-language model (an image-text-to-text model whose processor takes
video: Qwen2.5-VL, Qwen3-VL, Cosmos-Reason2, LLaVA-OneVision) asked AutoEval's questions (`chat.py`) with
greedy decoding, read by the one parser, with the continuous score from its answer-token logits.

Frames are sampled as AutoEval samples them (`frames.sample_frames`, `frames` of them) and handed to the
model's own processor, which resizes them its way, with the frame rate and the indices they came from, so
models that place frames in time (Qwen's multimodal positions, Qwen3-VL's timestamps) see when each was
taken. Frames given as a tensor (ComfyUI's IMAGE) carry no frame rate: ASSUMED_FPS is used.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..infra.checkpoints import check_weights_folder
from ..infra.console import first_line
from ..infra.devices import resolve_device, resolve_dtype
from ..infra.lifecycle import LazyWeights
from ..infra.progress import OptionalProgress
from .base import JudgeLoadError, Judgement, Video, check_request
from .chat import Question, generated_answer, judgement, questions, single_token_ids
from .frames import sample_frames, sample_indices
from .scores import RULE_VALUES, SCALE_VALUES
from .spec import FOLDER_JUDGE, JudgeSpec, folder_config
from .videophy2.config import is_autoeval

DEFAULT_FRAMES = 16
#: enough for "4" or "I would rate this video a 4."; the parser reads the first number in the answer
DEFAULT_MAX_NEW_TOKENS = 32
#: the frame rate of frames that come without one: the rate the supported text-to-video models render at
ASSUMED_FPS = 8.0


@dataclass(frozen=True)
class _Spec:
    """What (re)loads the weights, so a released judge can come back from disk."""

    folder: str
    device: str
    dtype: str


class VLMJudge:
    """A video-language model in this process (a `base.Judge`).

    The model may be moved between devices by someone else (ComfyUI's model management, through
    `modules()`); every call reads its current device. `release()` drops the weights; the next call loads
    them again.
    """

    in_process = True
    info = FOLDER_JUDGE

    def __init__(self, model, processor, spec: _Spec, *, frames: int = DEFAULT_FRAMES,
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS):
        if frames < 1:
            raise ValueError(f"frames must be at least 1, not {frames}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, not {max_new_tokens}")
        self._weights = LazyWeights(lambda: _load_model(spec), model)
        self.processor, self.spec = processor, spec
        self.frames, self.max_new_tokens = frames, max_new_tokens
        self.name = os.path.basename(os.path.normpath(spec.folder)) or spec.folder
        tokenizer = processor.tokenizer
        tokenizer.padding_side = "left"  # generation continues every row from its last token
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._answer_ids = {values: single_token_ids(tokenizer, values) for values in (SCALE_VALUES, RULE_VALUES)}

    @classmethod
    def recognises(cls, folder: str) -> bool:
        """A transformers image-text-to-text model (the AutoEval's mPLUG-Owl is not one transformers knows)."""
        from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

        config = folder_config(folder)
        return not is_autoeval(config) and config.get("model_type") in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    @classmethod
    def load(cls, folder: str, *, device: str = "auto", dtype: str = "auto", frames: int = DEFAULT_FRAMES,
             max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> "VLMJudge":
        """The model in `folder` (a Hugging Face folder, nothing downloaded, no remote code) on `device` in
        `dtype` (auto, bf16, fp16, fp32: auto is fp32 on the CPU, bf16 or fp16 on a GPU)."""
        spec = _Spec(os.fspath(folder), device, dtype)
        return cls(_load_model(spec), _load_processor(spec.folder), spec, frames=frames,
                   max_new_tokens=max_new_tokens)

    @property
    def model(self):
        return self._weights()

    @property
    def loaded(self) -> bool:
        return self._weights.loaded

    def modules(self) -> dict[str, torch.nn.Module]:
        """The torch modules holding the weights, for a host's memory management (ComfyUI moves them)."""
        return {"judge": self.model}

    def release(self) -> None:
        self._weights.release()

    def judge(self, videos: Sequence[Video], captions: Sequence[str], *,
              rules: Sequence[Sequence[str]] | None = None, batch_size: int = 1,
              progress: OptionalProgress = None) -> list[Judgement]:
        """See `base.Judge.judge`. A batch of videos is one `generate` call holding all their questions."""
        check_request(videos, captions, rules, batch_size)
        rules = [list(r) for r in rules] if rules is not None else [[] for _ in videos]
        results: list[Judgement] = []
        for start in range(0, len(videos), batch_size):
            batch = range(start, min(start + batch_size, len(videos)))
            clips = [self._clip(videos[i]) for i in batch]
            asked = [questions(captions[i], rules[i]) for i in batch]
            answers = iter(self._ask([(clip, question) for clip, qs in zip(clips, asked) for question in qs]))
            for i, clip, qs in zip(batch, clips, asked):
                results.append(judgement(captions[i], rules[i], [next(answers) for _ in qs], judge=self.name,
                                         frames=clip.total, shown=self.frames))
            if progress:
                for i in batch:
                    progress(i + 1, len(videos))
        return results

    def _clip(self, video: Video) -> "_Clip":
        fps = ASSUMED_FPS
        if isinstance(video, (str, os.PathLike)):
            from ..video.writer import read_video

            video, fps = read_video(video)
        frames, total = sample_frames(video, self.frames)
        return _Clip(frames, {"total_num_frames": total, "fps": fps,
                              "frames_indices": sample_indices(total, self.frames)})

    def _ask(self, asks: list[tuple["_Clip", Question]]) -> list[tuple[str, float | None]]:
        """(answer text, expected score) for each (clip, question), generated greedily in one batch."""
        model, processor = self.model, self.processor
        texts = [processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question.text}]}],
            add_generation_prompt=True, tokenize=False) for _, question in asks]
        inputs = processor(text=texts, videos=[clip.frames for clip, _ in asks],
                           video_metadata=[clip.metadata for clip, _ in asks], do_sample_frames=False,
                           padding=True, return_tensors="pt")
        self._check_length(inputs["input_ids"].shape[1])
        inputs = inputs.to(model.device)
        with torch.inference_mode():
            output = model.generate(
                **inputs, max_new_tokens=self.max_new_tokens, output_logits=True, return_dict_in_generate=True,
                pad_token_id=processor.tokenizer.pad_token_id,
                # plain greedy decoding, as AutoEval's, whatever the model's generation config suggests
                do_sample=False, temperature=None, top_p=None, top_k=None, num_beams=1, repetition_penalty=1.0,
            )
        tokens = output.sequences[:, inputs["input_ids"].shape[1]:].cpu()
        return [generated_answer(processor.tokenizer, tokens, output.logits, row, self._answer_ids[question.values],
                                 question.values) for row, (_, question) in enumerate(asks)]

    def _check_length(self, length: int) -> None:
        """A prompt past the model's context would be read wrongly, never an error: say so instead."""
        config = self.model.config
        limit = getattr(config.get_text_config(), "max_position_embeddings", None)
        if limit and length + self.max_new_tokens > limit:
            raise ValueError(f"a question with its video is {length} tokens, and {self.name} reads at most {limit} "
                             f"with its answer: shorten the caption or rules, or judge fewer frames")


@dataclass(frozen=True)
class _Clip:
    frames: object  # uint8 [frames, H, W, 3]
    metadata: dict  # transformers' VideoMetadata fields

    @property
    def total(self) -> int:
        return self.metadata["total_num_frames"]


def _load_processor(folder: str):
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise JudgeLoadError(f"could not load the processor of {folder}: {first_line(exc)}") from exc
    if getattr(processor, "video_processor", None) is None or not hasattr(processor, "tokenizer"):
        raise JudgeLoadError(f"{folder}'s processor takes no video: choose a video-language model such as "
                             "Qwen2.5-VL, Qwen3-VL or Cosmos-Reason2")
    if hasattr(processor.video_processor, "cap_pixels_per_frame"):
        # Qwen2-VL's processors: bound the pixels per frame as qwen-vl-utils, which the models were trained
        # with, does (transformers warns until that is its default)
        processor.video_processor.cap_pixels_per_frame = True
    return processor


def _load_model(spec: _Spec):
    from transformers import AutoModelForImageTextToText

    _check_folder(spec.folder)
    check_weights_folder(spec.folder, "judge", JudgeLoadError)
    device = resolve_device(spec.device, JudgeLoadError)
    dtype = resolve_dtype(spec.dtype, device, JudgeLoadError)
    try:
        model = AutoModelForImageTextToText.from_pretrained(spec.folder, dtype=dtype, local_files_only=True,
                                                            trust_remote_code=False)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise JudgeLoadError(f"could not load the judge {spec.folder}: {first_line(exc)}") from exc
    return model.to(device).eval()


def _check_folder(folder: str) -> None:
    """`folder` holds a video-language model this judge can load (not the AutoEval, not a text model)."""
    kind = JudgeSpec.kind_of(folder)  # a folder no judge knows is that error
    if kind == "videophy2":
        raise JudgeLoadError(f"{folder} is VideoPhy-2's AutoEval (mPLUG-Owl), which transformers cannot load: "
                             "open it as the videophy2 judge")
    if kind != "vlm":
        raise JudgeLoadError(f"{folder} holds a model of the {kind} judge: open it as that judge")
