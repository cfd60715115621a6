"""Load Physics Judge, Physics Judge (API), Physics Judge, and Pick Best Video.

Best of N is a graph pattern on ComfyUI lists rather than one node: Physics Refine (Variants) writes N
refinements of one prompt (seeds s … s+N−1) as a list, so the sampler and Physics Judge after it run once
per refinement, each with its own progress bar and Cancel, and Pick Best Video (a list node) keeps the
best render. Every step stays visible and swappable: another video model, another judge, a preview of
each candidate.
"""

from __future__ import annotations

import comfy.model_management as mm
import torch
from comfy_api.latest import io, ui

from ..phyprompt.infra.devices import PRECISIONS
from ..phyprompt.infra.endpoint import DEFAULT_API_KEY_ENV, DEFAULT_TIMEOUT
from ..phyprompt.judges.selection import CRITERIA, Candidate, best, report
from . import model_folders
from .memory import manage, progress_bar
from .refiner_nodes import server_settings_error
from .schema import JUDGE, node_schema

JudgeType = io.Custom("PHYPROMPT_JUDGE")
JUDGE_ALIASES = ("physics judge", "judge", "score video", "evaluate video", "VideoPhy", "AutoEval", "physics",
                 "PhyPrompt")
MAX_FRAMES = 1024


def _models() -> dict[str, str]:
    return model_folders.judge_models()


def _resolve(name: str) -> str:
    return model_folders.resolve(name, _models(), "judge model", (model_folders.JUDGES,))


class LoadPhysicsJudge(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            node_id="PhyPromptLoadJudge",
            search_aliases=(*JUDGE_ALIASES, "load judge", "Qwen2.5-VL", "Qwen3-VL", "Cosmos-Reason"),
            display_name="Load Physics Judge",
            category=JUDGE,
            description="Loads a model that scores videos the way VideoPhy-2 does: semantic adherence (SA) and "
                        "physical commonsense (PC), 1 to 5 each. VideoPhy-2's AutoEval (the paper's judge, "
                        "videophysics/videophy_2_auto, 14 GB) or a video-language model folder (Qwen2.5-VL, "
                        "Qwen3-VL, Cosmos-Reason2) under models/judges.",
            inputs=[
                io.Combo.Input("judge", options=list(_models()),
                               tooltip="A folder under models/judges: the AutoEval release as downloaded, or a "
                                       "transformers video-language model."),
                io.Combo.Input("precision", options=["auto", *PRECISIONS], default="auto",
                               tooltip="auto: the judge's own (AutoEval: bf16, as released)."),
                io.Combo.Input("device", options=["auto", "cpu"], default="auto",
                               tooltip="auto: ComfyUI's GPU, offloaded when a video model needs the memory."),
                io.Int.Input("frames", default=0, min=0, max=MAX_FRAMES,
                             tooltip="Frames the judge looks at; 0: the judge's own (AutoEval always 32)."),
            ],
            outputs=[JudgeType.Output(display_name="judge")],
        )

    @classmethod
    def validate_inputs(cls, judge) -> bool | str:
        if judge is None:  # linked: known when the graph runs
            return True
        try:
            _resolve(judge)
        except ValueError as exc:
            return str(exc)
        return True

    @classmethod
    def execute(cls, judge, precision, device, frames) -> io.NodeOutput:
        from ..phyprompt.judges import open_judge

        load_device = mm.get_torch_device() if device == "auto" else torch.device("cpu")
        offload_device = mm.text_encoder_offload_device() if device == "auto" else load_device
        # loaded where it waits; ComfyUI moves it to load_device for each run
        opened = open_judge(_resolve(judge), device=str(offload_device), precision=precision, frames=frames or None)
        return io.NodeOutput(manage(opened, load_device, offload_device))


class LoadAPIJudge(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            node_id="PhyPromptLoadAPIJudge",
            search_aliases=(*JUDGE_ALIASES, "API", "Ollama", "OpenAI", "vLLM"),
            display_name="Physics Judge (API)",
            category=JUDGE,
            description="Judges on an OpenAI-compatible server with image input (vLLM, Ollama, OpenAI): sampled "
                        "frames are sent as images with VideoPhy-2's questions. Nothing is loaded into ComfyUI.",
            inputs=[
                io.String.Input("url", default="http://127.0.0.1:8000/v1",
                                tooltip="The server's API base (vLLM: http://127.0.0.1:8000/v1, Ollama: "
                                        "http://127.0.0.1:11434/v1) or its full /chat/completions address."),
                io.String.Input("model", default="Qwen/Qwen2.5-VL-7B-Instruct",
                                tooltip="The vision model the server serves."),
                io.String.Input("api_key_env", default=DEFAULT_API_KEY_ENV,
                                tooltip="The NAME of the environment variable holding the API key (never the key "
                                        "itself: widgets are saved in every workflow). Not set: no key is sent."),
                io.Int.Input("timeout", default=int(DEFAULT_TIMEOUT), min=1, max=3600,
                             tooltip="Seconds to wait for one answer; timeouts, 429 and 5xx are retried."),
                io.Int.Input("frames", default=0, min=0, max=MAX_FRAMES,
                             tooltip="Frames sent per question; 0: the API judge's own default."),
            ],
            outputs=[JudgeType.Output(display_name="judge")],
        )

    @classmethod
    def validate_inputs(cls, url, model, api_key_env) -> bool | str:
        return server_settings_error(url, model, api_key_env, "Qwen/Qwen2.5-VL-7B-Instruct") or True

    @classmethod
    def execute(cls, url, model, api_key_env, timeout, frames) -> io.NodeOutput:
        from ..phyprompt.judges import open_judge

        opened = open_judge(url, model=model, api_key_env=api_key_env, timeout=timeout, frames=frames or None)
        return io.NodeOutput(manage(opened))


def _continuous(answer) -> float:
    return float(answer.score if answer.expected is None else answer.expected)


class PhysicsJudge(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            node_id="PhyPromptJudge",
            search_aliases=JUDGE_ALIASES,
            display_name="Physics Judge",
            category=JUDGE,
            description="Scores a video (an IMAGE batch, e.g. a sampler's frames) against its caption: SA and PC "
                        "from 1 to 5, and joint success (both at least 4), VideoPhy-2's measure. The caption is "
                        "what the user asked for (the original prompt, not the refined one).",
            inputs=[
                JudgeType.Input("judge"),
                io.Image.Input("images", tooltip="The video's frames, in order."),
                io.String.Input("caption", multiline=True, default="",
                                tooltip="What the video should show: the original prompt."),
                io.String.Input("rules", multiline=True, default="", optional=True,
                                tooltip="Optional physical rules, one per line; each is answered 0 (broken), "
                                        "1 (followed) or 2 (cannot tell) in the summary."),
            ],
            outputs=[
                io.Float.Output("sa", display_name="SA",
                                tooltip="Semantic adherence, 1-5: the expected score over the judge's answer "
                                        "probabilities where it has them, else its answer."),
                io.Float.Output("pc", display_name="PC", tooltip="Physical commonsense, 1-5 (as SA)."),
                io.Boolean.Output("joint", display_name="joint", tooltip="SA ≥ 4 and PC ≥ 4 (the judge's answers)."),
                io.String.Output("summary", display_name="summary", tooltip="The scores in one line."),
            ],
        )

    @classmethod
    def execute(cls, judge, images, caption, rules="") -> io.NodeOutput:
        rule_list = [line.strip() for line in (rules or "").splitlines() if line.strip()]
        try:
            (result,) = judge.ready().judge([images[..., :3]], [caption], rules=[rule_list] if rule_list else None,
                                            progress=progress_bar(1))
        finally:
            judge.done()
        summary = result.summary()
        return io.NodeOutput(_continuous(result.sa), _continuous(result.pc), result.joint, summary,
                             ui=ui.PreviewText(summary))


class PickBestVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            node_id="PhyPromptPickBest",
            search_aliases=("best of n", "pick best", "select video", *JUDGE_ALIASES),
            display_name="Pick Best Video",
            category=JUDGE,
            description="Takes the lists of videos and scores that Physics Judge made per variant and keeps the "
                        "best video; the report lists every candidate's scores.",
            is_input_list=True,
            # output ids differ from the input ids (V3 requires it); the sockets show the plain names
            inputs=[
                io.Image.Input("images", tooltip="The candidates' frames (a list: one IMAGE batch per video)."),
                io.Float.Input("sa", force_input=True, tooltip="Physics Judge's SA, per candidate."),
                io.Float.Input("pc", force_input=True, tooltip="Physics Judge's PC, per candidate."),
                io.Boolean.Input("joint", force_input=True, tooltip="Physics Judge's joint, per candidate."),
                io.Float.Input("fps", force_input=True, tooltip="The sampler's fps, passed through."),
                io.Combo.Input("by", options=list(CRITERIA), default="joint",
                               tooltip="; ".join(f"{name}: {text}" for name, text in CRITERIA.items())),
                io.Float.Input("sa_weight", default=0.5, min=0.0, max=1.0, step=0.05,
                               tooltip="For `weighted`: the share of SA (the rest is PC)."),
                io.String.Input("prompts", force_input=True, optional=True,
                                tooltip="The candidates' prompts (e.g. the refined list), for the report."),
            ],
            outputs=[
                io.Image.Output("best_images", display_name="images", tooltip="The best candidate's frames."),
                io.Float.Output("best_fps", display_name="fps", tooltip="Its fps."),
                io.Int.Output("best_index", display_name="index", tooltip="Its position in the list, from 0."),
                io.String.Output("best_prompt", display_name="prompt", tooltip="Its prompt (empty when none was given)."),
                io.String.Output("report", display_name="report", tooltip="Every candidate's scores."),
            ],
        )

    @classmethod
    def execute(cls, images, sa, pc, joint, fps, by, sa_weight, prompts=None) -> io.NodeOutput:
        count = len(images)
        if not (len(sa) == len(pc) == len(joint) == count):
            raise ValueError(f"got {count} videos but {len(sa)} SA, {len(pc)} PC and {len(joint)} joint scores: "
                             "wire the same Physics Judge's outputs, fed by the same list, into all three")
        candidates = [Candidate(float(s), float(p), bool(j)) for s, p, j in zip(sa, pc, joint)]
        chosen = best(candidates, by[0], sa_weight[0])
        prompts = prompts or []
        labels = [p if len(p) <= 80 else p[:77] + "…" for p in prompts]
        text = report(candidates, chosen, by[0], labels)
        # one fps for all when the sampler ran once per candidate with the same settings, else one each
        return io.NodeOutput(images[chosen], float(fps[min(chosen, len(fps) - 1)]), chosen,
                             prompts[chosen] if chosen < len(prompts) else "", text, ui=ui.PreviewText(text))
