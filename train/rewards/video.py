"""The paper's video-level reward: render each rewrite with a frozen registered backend, score the video
with a registered judge — SA against the user's *original* prompt, and PC.

`video_sa` and `video_pc` are two rewards (so the curriculum can weigh them step by step) over one
`VideoScorer` per process: the first of them to see a batch renders and judges it, the second reads the
same scores. Each process (rank) scores only its own completions, on its own GPU (`LOCAL_RANK`), before
trl gathers the rewards, so rendering scales with the number of GPUs.

Every video and every score is cached by content hash (`phyprompt.evaluation.cache`): a rewrite that was
already rendered with the same backend, weights, settings and seed is never rendered again, and is never
judged again by the same judge, across steps, ranks and runs. A rewrite the parser rejects gets the
minimum; so does one whose render or judgement fails (an exception or a timeout), with a logged warning,
and training goes on. The reward-time renders of a step run back to back on the rank's GPU (the backend
interface renders one video per call).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from .options import MINIMUM, RewardArguments
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
        from phyprompt.evaluation.cache import Cache

        self.options = options
        self.cache = Cache(options.reward_cache_dir)
        self.backend = None
        self.judge = None
        self.renders = 0  # videos this process rendered (the cache saves the rest)
        self._last: tuple | None = None

    def _device(self) -> str:
        import torch

        if torch.cuda.is_available():
            return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        return "cpu"

    def _render_settings(self) -> dict:
        o = self.options
        return {"steps": o.render_steps, "frames": o.render_frames, "width": o.render_width,
                "height": o.render_height, "seed": o.render_seed}

    def video_key(self, refined: str) -> str:
        from phyprompt.evaluation.cache import key

        o = self.options
        return key(backend=o.video_backend, model=os.path.abspath(o.video_model), dtype=o.video_dtype,
                   prompt=refined, **self._render_settings())

    def score_key(self, video_key: str, original: str) -> str:
        from phyprompt.evaluation.cache import key

        judge = self.options.judge if "://" in self.options.judge else os.path.abspath(self.options.judge)
        return key(video=video_key, judge=judge, judge_model=self.options.judge_model, caption=original)

    def scores(self, originals: Sequence[str], completions: Sequence) -> list[tuple[float, float] | None]:
        """(SA, PC) in 0..1 per completion, None for the ones that get the minimum. The second reward of a
        step asks about the same batch: it gets the same answers without a second look at the cache (and
        without retrying a render that failed)."""
        batch = (list(originals), [c[-1]["content"] if isinstance(c, list) else c for c in completions])
        if self._last is not None and self._last[0] == batch:
            return self._last[1]
        results: list[tuple[float, float] | None] = []
        for original, refined in zip(originals, _parsed(completions)):
            if refined is None:
                results.append(None)
                continue
            try:
                results.append(self._score(original, refined))
            except Exception as error:  # one failed render or judgement must not stop training
                log.warning("video reward: %s for %r; it gets the minimum reward", error, refined[:80])
                results.append(None)
        self._last = (batch, results)
        return results

    def _score(self, original: str, refined: str) -> tuple[float, float]:
        video_key = self.video_key(refined)
        score_key = self.score_key(video_key, original)
        record = self.cache.get("score", score_key)
        if record is None:
            video = self._video(video_key, refined)
            judgement = self._judge().judge([video], [original])[0]
            record = {"sa": _unit(judgement.sa), "pc": _unit(judgement.pc), "summary": judgement.summary()}
            self.cache.put("score", score_key, record)
        return record["sa"], record["pc"]

    def _video(self, video_key: str, refined: str):
        cached = self.cache.get_video(video_key)
        if cached is not None:
            return str(cached[0])
        from phyprompt.video.backend import SampleRequest, load_backend

        if self.backend is None:
            o = self.options
            self.backend = load_backend(o.video_backend, o.video_model, dtype=o.video_dtype, device=self._device())
        settings = self._render_settings()
        video = self.backend.sample(SampleRequest(prompt=refined, **settings))
        self.renders += 1
        path, _record = self.cache.put_video(video_key, video.frames, video.fps, {"prompt": refined})
        return str(path)

    def _judge(self):
        if self.judge is None:
            from phyprompt.judges import open_judge

            self.judge = open_judge(self.options.judge, model=self.options.judge_model,
                                    **({} if "://" in self.options.judge else {"device": self._device()}))
        return self.judge


def _unit(answer) -> float:
    """A 1..5 judge score (the continuous one where the judge has it) as 0..1; an unreadable answer is 0."""
    value = answer.score if answer.expected is None else answer.expected
    return min(1.0, max(0.0, (value - 1) / 4))


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
