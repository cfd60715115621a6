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
and training goes on. A backend or judge that cannot be loaded stops training with its error instead: that
is no failure of one rewrite, and training on nothing but minimum rewards would hide it. The step's renders go to the backend as batches of `render_batch_size`
(`VideoBackend.sample_batch`: CogVideoX renders a batch in one pipeline call), and its videos to the judge
in one call; when a batch fails, its items are tried one by one, so only the bad one loses its reward.
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
        from phyprompt.evaluation.cache import Cache
        from phyprompt.judges import JudgeSpec
        from phyprompt.video.spec import BackendSpec

        self.options = options
        # the recipe's strings are read here, once; the models are loaded on first use
        self.backend_spec = BackendSpec.build(options.video_backend, options.video_model, dtype=options.video_dtype,
                                              device=rank_device())
        self.judge_spec = JudgeSpec.parse(options.judge, model=options.judge_model, device=rank_device())
        self.cache = Cache(options.reward_cache_dir)
        self.backend = None
        self.judge = None
        self.renders = 0  # videos this process rendered (the cache saves the rest)
        self._last: tuple | None = None

    def _render_settings(self) -> dict:
        o = self.options
        return {"steps": o.render_steps, "frames": o.render_frames, "width": o.render_width,
                "height": o.render_height, "seed": o.render_seed}

    def video_key(self, refined: str) -> str:
        from phyprompt.evaluation.cache import eight_bit_part, key
        from phyprompt.video import backend_info

        spec = self.backend_spec
        conversion = eight_bit_part(backend_info(spec.name).eight_bit)  # how the file's levels were made
        return key(backend=spec.name, model=os.path.abspath(spec.path), dtype=spec.dtype, prompt=refined,
                   **self._render_settings(), **conversion)

    def score_key(self, video_key: str, original: str) -> str:
        from phyprompt.evaluation.cache import key

        return key(video=video_key, judge=self.judge_spec.identity(), caption=original)

    def scores(self, originals: Sequence[str], completions: Sequence) -> list[tuple[float, float] | None]:
        """(SA, PC) in 0..1 per completion, None for the ones that get the minimum. The second reward of a
        step asks about the same batch: it gets the same answers without a second look at the cache (and
        without retrying a render that failed)."""
        batch = (list(originals), [c[-1]["content"] if isinstance(c, list) else c for c in completions])
        if self._last is not None and self._last[0] == batch:
            return self._last[1]
        refined = _parsed(completions)
        results: list[tuple[float, float] | None] = [None] * len(refined)
        pending: dict[int, tuple[str, str]] = {}  # completion -> (video key, score key), not scored yet
        for i, (original, prompt) in enumerate(zip(originals, refined)):
            if prompt is None:
                continue
            video_key = self.video_key(prompt)
            score_key = self.score_key(video_key, original)
            record = self.cache.get("score", score_key)
            if record is None:
                pending[i] = (video_key, score_key)
            else:
                results[i] = (record["sa"], record["pc"])
        videos = self._videos({video_key: refined[i] for i, (video_key, _) in pending.items()})
        judged = [i for i, (video_key, _) in pending.items() if video_key in videos]
        records = self._judge_all([videos[pending[i][0]] for i in judged], [originals[i] for i in judged],
                                  [refined[i] for i in judged])
        for i, record in zip(judged, records):
            if record is not None:
                self.cache.put("score", pending[i][1], record)
                results[i] = (record["sa"], record["pc"])
        self._last = (batch, results)
        return results

    def _videos(self, prompts: dict[str, str]) -> dict[str, str]:
        """The video file of each {video key: refined prompt}, from the cache or rendered; a prompt whose
        render fails is left out, with a warning."""
        from phyprompt.video.backend import SampleRequest

        paths, missing = {}, []
        for video_key, prompt in prompts.items():
            cached = self.cache.get_video(video_key)
            if cached is None:
                missing.append(video_key)
            else:
                paths[video_key] = str(cached[0])
        if not missing:
            return paths
        backend = self._backend()  # a model that does not load stops training: it is no per-rewrite failure
        size = max(1, self.options.render_batch_size)
        for start in range(0, len(missing), size):
            keys = missing[start:start + size]
            requests = [SampleRequest(prompt=prompts[k], **self._render_settings()) for k in keys]
            for video_key, video in zip(keys, _each_or_alone(backend.sample_batch, requests)):
                if isinstance(video, Exception):
                    log.warning("video reward: %s for %r; it gets the minimum reward", video, prompts[video_key][:80])
                    continue
                self.renders += 1
                path, _record = self.cache.put_video(video_key, video.frames, video.fps, {"prompt": prompts[video_key]},
                                                     eight_bit=backend.eight_bit)  # as the original saves them
                paths[video_key] = str(path)
        return paths

    def _judge_all(self, videos: list[str], originals: list[str], refined: list[str]) -> list[dict | None]:
        """A score record per video (SA against the user's original prompt, PC), None where judging failed."""
        if not videos:
            return []
        judge = self._judge()  # as the backend: a judge that does not load stops training
        records = []
        answers = _each_or_alone(lambda pairs: judge.judge([v for v, _ in pairs], [c for _, c in pairs]),
                                 list(zip(videos, originals)))
        for judgement, prompt in zip(answers, refined):
            if isinstance(judgement, Exception):
                log.warning("video reward: judging failed (%s) for %r; it gets the minimum reward", judgement,
                            prompt[:80])
                records.append(None)
            else:
                records.append({"sa": _unit(judgement.sa), "pc": _unit(judgement.pc), "summary": judgement.summary()})
        return records

    def _backend(self):
        if self.backend is None:
            self.backend = self.backend_spec.open()
        return self.backend

    def _judge(self):
        if self.judge is None:
            self.judge = self.judge_spec.open()
        return self.judge


def _each_or_alone(work, items: list) -> list:
    """`work(items)` (one result per item); when that raises, each item alone, so that one bad item costs
    only its own result: the exception takes its place in the list."""
    try:
        return list(work(items))
    except Exception as error:  # one failed render or judgement must not stop training
        if len(items) == 1:
            return [error]
    results = []
    for item in items:
        try:
            results.extend(work([item]))
        except Exception as error:
            results.append(error)
    return results


def _unit(answer) -> float:
    """A 1..5 judge score (the continuous one where the judge has it) as 0..1; an unreadable answer is 0."""
    return unit_score(answer.score if answer.expected is None else answer.expected)


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
