"""Rewards for `train.grpo`, registered by name and chosen in the recipe (`rewards: [format, budget, …]`).

Each reward is a plain callable trl's GRPOTrainer accepts: `reward(prompts, completions, **columns)` returns
one float per completion, where the columns are the dataset's (`original_prompt`, `target`). Every reward
lies in 0..1 and gives a completion the refiner's parser rejects the documented minimum, `MINIMUM` (0), never
an exception: a malformed rewrite is simply the worst rewrite. trl logs each one as `rewards/<name>/mean`.

A registry entry is "module:factory" (relative to this package); the factory takes the recipe's
`RewardArguments` and returns the callable, named after its registry name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from .options import MINIMUM, RewardArguments

_REGISTRY = {
    "format": "text:format_reward",
    "budget": "text:budget_reward",
    "semantic": "text:semantic_reward",
    "physics": "text:physics_reward",
    "physics_judge": "prompt_judge:physics_judge_reward",
    "video_sa": "video:video_sa_reward",
    "video_pc": "video:video_pc_reward",
}
REWARD_NAMES = tuple(_REGISTRY)

__all__ = ["MINIMUM", "REWARD_NAMES", "RewardArguments", "build_reward"]


def build_reward(name: str, options: RewardArguments) -> Callable:
    try:
        module_name, factory = _REGISTRY[name].split(":")
    except KeyError:
        raise ValueError(f"unknown reward {name!r}; choose from: {', '.join(REWARD_NAMES)}") from None
    reward = getattr(importlib.import_module(f".{module_name}", __package__), factory)(options)
    reward.__name__ = name  # trl logs rewards/<__name__>/mean
    return reward
