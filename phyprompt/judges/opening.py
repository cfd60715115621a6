"""Opening a judge from one string, as the CLI and the nodes take it: an http(s) address is a server
(`api`); a folder is recognised by its config.json: VideoPhy-2's AutoEval (`videophysics/videophy_2_auto`,
an mPLUG-Owl model) is `videophy2`, a transformers image-text-to-text model is `vlm`. Anything else is one
`JudgeLoadError` that says what the folder holds and what a judge is.

Importing this module is cheap: transformers is imported when a folder is looked at.
"""

from __future__ import annotations

import os

from ..infra.checkpoints import ModelFolderError, read_folder_json
from ..infra.endpoint import DEFAULT_API_KEY_ENV, DEFAULT_RETRIES, DEFAULT_TIMEOUT
from .base import JUDGES
from .videophy2.config import MODEL_TYPE as AUTOEVAL_MODEL_TYPE

#: the released AutoEval's config.json names its model mPLUG-Owl (which transformers does not know) by
#: model_type, and by its class
AUTOEVAL_ARCHITECTURE = "MplugOwlForConditionalGeneration"

_WHAT_A_JUDGE_IS = ("give VideoPhy-2's AutoEval folder (videophysics/videophy_2_auto), a video-language model "
                    "folder (Qwen2.5-VL, Qwen3-VL, Cosmos-Reason2) or an OpenAI-compatible server's http(s) address")


class JudgeLoadError(ModelFolderError):
    """A judge could not be opened or loaded; the message says why and what to do."""


def is_url(spec: str) -> bool:
    return spec.strip().lower().startswith(("http://", "https://"))


def judge_kind(spec: str) -> str:
    """"api", "videophy2" or "vlm": the judge `spec` (an address or a folder) is."""
    if is_url(spec):
        return "api"
    config = _config(spec)
    model_type = config.get("model_type")
    architectures = config.get("architectures") or []
    if model_type == AUTOEVAL_MODEL_TYPE or AUTOEVAL_ARCHITECTURE in architectures:
        return "videophy2"
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    if model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        return "vlm"
    found = f"model_type {model_type!r}" if model_type else "no model_type"
    if architectures:
        found += f" ({', '.join(map(str, architectures))})"
    raise JudgeLoadError(f"{spec} holds a model with {found}, which is not a judge this version knows: "
                         f"{_WHAT_A_JUDGE_IS}")


def check_vlm_folder(folder: str) -> None:
    """`folder` holds a video-language model the `vlm` judge can load (not the AutoEval, not a text model)."""
    if judge_kind(folder) == "videophy2":
        raise JudgeLoadError(f"{folder} is VideoPhy-2's AutoEval (mPLUG-Owl), which transformers cannot load: "
                             "open it as the videophy2 judge")


def open_judge(spec: str, *, device: str = "auto", precision: str = "auto", frames: int | None = None,
               model: str | None = None, api_key_env: str = DEFAULT_API_KEY_ENV,
               timeout: float = DEFAULT_TIMEOUT, retries: int = DEFAULT_RETRIES):
    """The judge `spec` names (see the module docstring), loaded. `device` and `precision` are for a
    folder (precision "auto" is the judge's own default), `model` (required), `api_key_env`, `timeout` and
    `retries` for a server; `frames`, how many frames a judge looks at, is each judge's own when None (the
    AutoEval's is fixed)."""
    kind = judge_kind(spec)
    spec = spec.strip() if kind == "api" else os.path.expanduser(spec)
    options = {} if frames is None else {"frames": frames}
    if kind == "api":
        if not model:
            raise JudgeLoadError(f"a judge on a server needs the model name it serves (e.g. qwen2.5vl:7b) "
                                 f"to ask at {spec}")
        return JUDGES.get(kind).load(spec, model=model, api_key_env=api_key_env, timeout=timeout,
                                      retries=retries, **options)
    if model:
        raise JudgeLoadError(f"the model name is for a judge on a server; {spec} is a model folder, leave it out")
    if kind == "videophy2" and frames is not None:
        raise JudgeLoadError("VideoPhy-2's AutoEval always looks at the 32 frames it was trained on: leave out "
                             "the frame count")
    return JUDGES.get(kind).load(spec, device=device, precision=precision, **options)


def _config(spec: str) -> dict:
    path = os.path.expanduser(spec)
    if os.path.isfile(path):
        raise JudgeLoadError(f"{spec} is a file: {_WHAT_A_JUDGE_IS}")
    if not os.path.exists(path):
        from ..refiners.loading import is_hub_id

        hint = (f"; it is not downloaded for you: hf download {spec} --local-dir DIR, then give DIR"
                if is_hub_id(spec) else "")
        raise JudgeLoadError(f"judge folder not found: {spec}{hint}")
    return read_folder_json(path, "config.json", "judge", "a Hugging Face model folder", JudgeLoadError)
