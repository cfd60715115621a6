"""The video models a refined prompt is written for, and the text-encoder budget of each."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    name: str
    label: str
    text_encoder: str
    token_limit: int
    # Special tokens the encoder adds around the text (BOS/EOS); they count against the limit.
    special_tokens: int
    style_hint: str


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            name="cogvideox",
            label="CogVideoX (2B/5B)",
            text_encoder="T5 v1.1 XXL",
            token_limit=226,
            special_tokens=1,
            style_hint=(
                "CogVideoX reads long, flowing descriptive prose well: one paragraph that walks through the "
                "scene in time order, naming materials, motion and how it ends."
            ),
        ),
        Target(
            name="videocrafter2",
            label="VideoCrafter2",
            text_encoder="OpenCLIP ViT-H/14",
            token_limit=77,
            special_tokens=2,
            style_hint=(
                "VideoCrafter2's CLIP encoder sees only a short text: one or two dense sentences, most "
                "important subject and motion first, no filler words."
            ),
        ),
        Target(
            name="lavie",
            label="LaVie",
            text_encoder="CLIP ViT-L/14",
            token_limit=77,
            special_tokens=2,
            style_hint=(
                "LaVie's CLIP encoder sees only a short text: one or two dense sentences, most important "
                "subject and motion first, no filler words."
            ),
        ),
        Target(
            name="generic",
            label="Any text-to-video model",
            text_encoder="unknown (T5-class budget assumed)",
            token_limit=226,
            special_tokens=1,
            style_hint="Write one clear descriptive paragraph in plain language.",
        ),
    )
}

TARGET_NAMES = tuple(TARGETS)


def get_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise ValueError(f"unknown target {name!r}; choose one of: {', '.join(TARGET_NAMES)}") from None
