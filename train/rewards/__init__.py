"""Rewards for `train.grpo`, registered by name and chosen in the recipe (`rewards: [format, budget, …]`).

Each reward is a plain callable trl's GRPOTrainer accepts: `reward(prompts, completions, **columns)` returns
one float per completion, where the columns are the dataset's (`original_prompt`, `target`). Every reward
lies in 0..1 and gives a completion the refiner's parser rejects the documented minimum, `MINIMUM` (0), never
an exception: a malformed rewrite is simply the worst rewrite. trl logs each one as `rewards/<name>/mean`.

A registry entry is "module:factory" (relative to this package; other packages add rewards as entry points in
the group `phyprompt.rewards`); the factory takes the recipe's `RewardArguments` and returns the callable,
named after its registry name.
"""

from __future__ import annotations

from collections.abc import Callable

from phyprompt.infra.registry import Registry

from .options import MINIMUM, RewardArguments

REWARDS = Registry("reward", __package__, {
    "format": "text:format_reward",
    "budget": "text:budget_reward",
    "semantic": "text:semantic_reward",
    "physics": "text:physics_reward",
    "physics_judge": "prompt_judge:physics_judge_reward",
    "video_sa": "video:video_sa_reward",
    "video_pc": "video:video_pc_reward",
}, group="phyprompt.rewards")

__all__ = ["MINIMUM", "REWARDS", "RewardArguments", "build_reward"]


def build_reward(name: str, options: RewardArguments) -> Callable:
    reward = REWARDS.get(name)(options)
    reward.__name__ = name  # trl logs rewards/<__name__>/mean
    return reward
