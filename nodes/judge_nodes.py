"""The judges' loader nodes (Load Physics Judge, Physics Judge (API), and one per kind from another package, built
from the kinds' descriptions), Physics Judge, and Pick Best Video.

Best of N is a graph pattern on ComfyUI lists rather than one node: Physics Refine (Variants) writes N
refinements of one prompt (seeds s … s+N−1) as a list, so the sampler and Physics Judge after it run once
per refinement, each with its own progress bar and Cancel, and Pick Best Video (a list node) keeps the
best render. Every step stays visible and swappable: another video model, another judge, a preview of
each candidate.
"""

from __future__ import annotations

from comfy_api.latest import io, ui

from ..phyprompt.judges import JudgeSpec
from ..phyprompt.judges.selection import CRITERIA, Candidate, best, report
from .loaders import Family, loader_nodes
from .memory import Managed, manage, progress_bar
from .schema import JUDGE, node_schema

JudgeType = io.Custom("PHYPROMPT_JUDGE")
JUDGE_ALIASES = ("physics judge", "judge", "score video", "evaluate video", "VideoPhy", "AutoEval", "physics",
                 "PhyPrompt")


def _open(make, load_device, offload_device) -> Managed:
    """A judge in this process, loaded where it waits; ComfyUI moves it to load_device for each run."""
    return manage(make(device=str(offload_device)).open(), load_device, offload_device)


JUDGES_FAMILY = Family(JudgeSpec, JUDGE, JUDGE_ALIASES, JudgeType, "judge", _open)


def judge_loaders() -> list[type[io.ComfyNode]]:
    """Load Physics Judge (VideoPhy-2's AutoEval and the video-language models), Physics Judge (API), and a
    loader for each judge kind of another package."""
    return loader_nodes(JUDGES_FAMILY)


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
