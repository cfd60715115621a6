"""What to open of a judge: `JudgeSpec`, built once where a user's input enters (the command line, the loader
nodes, the evaluation, the GRPO video reward) and then only opened or named, and the description the folder
judges share (`FOLDER_JUDGE`: one loader node opens VideoPhy-2's AutoEval and the video-language models alike).

A user's string is read here, once: an http(s) address is a server (`api`); a folder is the kind that
recognises its config.json (VideoPhy-2's AutoEval, `videophysics/videophy_2_auto`, is `videophy2`; a
transformers image-text-to-text model is `vlm`). Anything else is one `JudgeLoadError` that says what the
folder holds and what a judge is.
"""

from __future__ import annotations

import os

from ..infra.checkpoints import read_folder_json
from ..infra.endpoint import is_server
from ..infra.kinds import DEVICE, KindInfo, LoadOption, ModelFiles, ModelSpec, dtype_option
from ..refiners.loading import is_hub_id
from .base import JUDGES, JudgeLoadError

_WHAT_A_JUDGE_IS = ("give VideoPhy-2's AutoEval folder (videophysics/videophy_2_auto), a video-language model "
                    "folder (Qwen2.5-VL, Qwen3-VL, Cosmos-Reason2) or an OpenAI-compatible server's http(s) address")
MAX_FRAMES = 1024  # the loader nodes' widget range

#: VideoPhy-2's AutoEval and the video-language models: one loader node, the kind told by the folder
FOLDER_JUDGE = KindInfo(
    node_id="PhyPromptLoadJudge",
    display_name="Load Physics Judge",
    description="Loads a model that scores videos the way VideoPhy-2 does: semantic adherence (SA) and physical "
                "commonsense (PC), 1 to 5 each. VideoPhy-2's AutoEval (the paper's judge, "
                "videophysics/videophy_2_auto, 14 GB) or a video-language model folder (Qwen2.5-VL, Qwen3-VL, "
                "Cosmos-Reason2) under models/judges.",
    search_aliases=("load judge", "Qwen2.5-VL", "Qwen3-VL", "Cosmos-Reason"),
    source=ModelFiles("judge", ("judges",), help="A folder under models/judges: the AutoEval release as downloaded, "
                                                  "or a transformers video-language model."),
    options=(
        # "precision" is the node's input name since 0.1 (saved in workflows); everywhere else it is dtype
        dtype_option("auto: the judge's own (AutoEval: bf16, as released).", input="precision"),
        DEVICE,
        LoadOption("frames", None, minimum=0, maximum=MAX_FRAMES, unset=0,
                   help="Frames the judge looks at; 0: the judge's own (AutoEval always 32)."),
    ),
)


class JudgeSpec(ModelSpec):
    family = JUDGES
    noun = "judge"

    @classmethod
    def parse(cls, text: str, **options) -> JudgeSpec:
        """The judge `text` names (see the module docstring), with the options its kind takes: `model` (the name a
        server serves, which it needs), `api_key_env` and `timeout` for a server; `dtype`, `device` for a folder
        ("auto": the judge's own); `frames`, how many frames it looks at, for either."""
        kind = cls.kind_of(text)
        if options.get("model") and not cls.family.get(kind).info.on_server:
            raise JudgeLoadError(f"the model name is for a judge on a server; {text} is a model folder, leave it out")
        return cls.of_kind(kind, text, **options)

    @classmethod
    def kind_of(cls, text: str) -> str:
        """`api` for a server address; for a folder, the kind that recognises its config.json."""
        if is_server(text):
            return "api"
        config = folder_config(text)
        kind = cls.recognised(os.path.expanduser(text))
        if kind is not None:
            return kind
        model_type, architectures = config.get("model_type"), config.get("architectures") or []
        found = f"model_type {model_type!r}" if model_type else "no model_type"
        if architectures:
            found += f" ({', '.join(map(str, architectures))})"
        raise JudgeLoadError(f"{text} holds a model with {found}, which is not a judge this version knows: "
                             f"{_WHAT_A_JUDGE_IS}")


def folder_config(folder: str) -> dict:
    """The config.json of a judge folder; a JudgeLoadError that says what a judge is for anything else."""
    path = os.path.expanduser(folder)
    if os.path.isfile(path):
        raise JudgeLoadError(f"{folder} is a file: {_WHAT_A_JUDGE_IS}")
    if not os.path.exists(path):
        hint = (f"; it is not downloaded for you: hf download {folder} --local-dir DIR, then give DIR"
                if is_hub_id(folder) else "")
        raise JudgeLoadError(f"judge folder not found: {folder}{hint}")
    return read_folder_json(path, "config.json", "judge", "a Hugging Face model folder", JudgeLoadError)
