"""The paper's video-level reward: render each rewrite with a frozen registered backend, score the video
with a registered judge — SA against the user's *original* prompt, and PC.

`video_sa` and `video_pc` are two rewards (so the curriculum can weigh them step by step) over one
`VideoScorer` per process: the first of them to see a batch asks the render-and-judge service
(`phyprompt.service`), the second reads the same scores. Where the service works is the recipe's
`video_service`: unset, in this process on its own GPU (`LOCAL_RANK`), the backend and judge kept loaded
next to the policy; "auto" or a Ray head's HOST:PORT, on a pool of Ray workers with GPUs of their own, so the
trainer's GPUs never load the video model (each training process gets its own pool of `video_workers`).

Every video and score is cached by content hash in `reward_cache_dir`, under the keys `phyprompt eval` uses:
a rewrite already rendered with the same backend, weights, settings and seed is never rendered again, and a
video rendered here is an eval cache hit (and back) when eval renders with the reward's settings. A rewrite
the parser rejects gets the minimum; so does one whose render or judgement fails, with a logged warning, and
training goes on. A backend or judge that cannot be loaded (or fails its first renders, every one) stops
training with its error instead: training on nothing but minimum rewards would hide it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from .options import MINIMUM, RewardArguments, rank_device, unit_score
from .text import _parsed

log = logging.getLogger(__name__)

# one scorer per recipe's options in this process; the options are kept with it so their id is never reused
_SCORERS: dict[int, tuple[RewardArguments, "VideoScorer"]] = {}


class VideoScorer:
    def __init__(self, options: RewardArguments):
        if not options.video_model:
            raise ValueError("the video-level reward needs video_model: the folder or file of the backend's weights")
        if not options.judge:
            raise ValueError("the video-level reward needs judge: the AutoEval folder, a VLM folder or a server URL")
        from phyprompt.judges import JudgeSpec
        from phyprompt.service import Cache, InProcess, RenderJudge
        from phyprompt.video.backend import VideoModelError
        from phyprompt.video.spec import BackendSpec

        if not os.path.exists(os.path.expanduser(options.video_model)):  # its fingerprint keys the cache
            raise VideoModelError(f"video_model not found: {options.video_model}")
        self.options = options
        if options.video_service:
            from phyprompt.service.ray_pool import RayPool

            executor, device = RayPool(options.video_service, workers=options.video_workers,
                                       gpus_per_worker=options.video_worker_gpus,
                                       sharing=int(os.environ.get("WORLD_SIZE", "1")),
                                       warn=lambda message: log.warning("video reward: %s", message)), "auto"
        else:
            executor, device = InProcess(keep_loaded=True), rank_device()
        # the recipe's strings are read here, once; the models are loaded on first use
        self.backend_spec = BackendSpec.build(options.video_backend, options.video_model, dtype=options.video_dtype,
                                              device=device)
        self.judge_spec = JudgeSpec.parse(options.judge, model=options.judge_model, device=device)
        self.service = RenderJudge(Cache(options.reward_cache_dir), executor,
                                   render_batch_size=max(1, options.render_batch_size),
                                   judge_batch_size=max(1, options.judge_batch_size),
                                   warn=lambda message: log.warning("video reward: %s; it gets the minimum reward",
                                                                    message))
        self._last: tuple | None = None

    @property
    def renders(self) -> int:
        """Videos this process had rendered (the cache saves the rest)."""
        return self.service.made["render"]

    def request(self, refined: str):
        from phyprompt.video.backend import SampleRequest

        o = self.options
        return SampleRequest(prompt=refined, seed=o.render_seed, steps=o.render_steps, frames=o.render_frames,
                             width=o.render_width, height=o.render_height)

    def scores(self, originals: Sequence[str], completions: Sequence) -> list[tuple[float, float] | None]:
        """(SA, PC) in 0..1 per completion, None for the ones that get the minimum. The second reward of a
        step asks about the same batch: it gets the same answers without a second look at the cache (and
        without retrying a render that failed)."""
        batch = (list(originals), [c[-1]["content"] if isinstance(c, list) else c for c in completions])
        if self._last is not None and self._last[0] == batch:
            return self._last[1]
        refined = _parsed(completions)
        parsed = [i for i, prompt in enumerate(refined) if prompt is not None]
        videos = self.service.videos(self.backend_spec, [self.request(refined[i]) for i in parsed])
        scores = self.service.scores(self.judge_spec, [(video, originals[i]) for video, i in zip(videos, parsed)])
        results: list[tuple[float, float] | None] = [None] * len(refined)
        for i, score in zip(parsed, scores):
            if score is not None and score.record is not None:
                results[i] = (_unit(score.record["sa"]), _unit(score.record["pc"]))
        self._last = (batch, results)
        return results


def _unit(answer: dict) -> float:
    """A 1..5 judge score (an `Answer` as its record keeps it; the continuous one where the judge has it) as
    0..1; an unreadable answer is 0."""
    return unit_score(answer["score"] if answer["expected"] is None else answer["expected"])


def scorer(options: RewardArguments) -> VideoScorer:
    if id(options) not in _SCORERS:
        _SCORERS[id(options)] = (options, VideoScorer(options))
    return _SCORERS[id(options)][1]


def _reward(options: RewardArguments, index: int):
    shared = scorer(options)

    def reward(prompts, completions, original_prompt=None, **_columns) -> list[float]:
        results = shared.scores(original_prompt or prompts, completions)
        return [MINIMUM if r is None else r[index] for r in results]
    return reward


def video_sa_reward(options: RewardArguments):
    return _reward(options, 0)


def video_pc_reward(options: RewardArguments):
    return _reward(options, 1)
