"""The one render-and-judge service: videos for (backend, request) and scores for (judge, video, caption), each
made once and kept in one content-hash cache, whoever asks (`phyprompt eval`, the GRPO video reward).

Keys (what determines each result), the same for every caller, so a video rendered for a reward is an eval
cache hit and back:
- video: the backend's identity (weights by content, load options), the device type and dtype it runs in, the
  whole `SampleRequest` (prompt, seed, settings; None for a backend's default) and, unless it is the
  default, how its frames become 8-bit (`BackendInfo.eight_bit`). Only the device *type*: which GPU of a
  machine or a cluster renders a video does not change it.
- score: the judge's identity (and, for a judge in this process, device type and dtype), the video's key and
  the caption SA is judged against (the user's original prompt).

Where the work runs is the executor's business: `InProcess` (the default: one model at a time here) or
`RayPool` (a pool of workers on a Ray cluster that keep their models loaded across calls). Either way the
results land in the one cache as they come, so a cancel or a kill loses only the work in flight and the
next run finds the rest. An item that fails is recorded (not cached) and the run goes on; a model whose
first `FAILED_START` items all fail stops it: that is no bad prompt but a setup problem.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from ..infra.progress import OptionalProgress
from ..judges.spec import JudgeSpec
from ..video.backend import SampleRequest, backend_class
from ..video.spec import BackendSpec
from .cache import Cache, eight_bit_part, key
from .work import Failed

#: a model whose first this-many items all fail stops the run
FAILED_START = 3

Bars = Callable[[str, str], AbstractContextManager[OptionalProgress]]  # (description, unit) -> progress


class RenderError(RuntimeError):
    """A backend or judge failed every item it tried first: a setup problem, not one bad prompt."""


class Executor(Protocol):
    """Where renders and judgements run. `render` and `judge` yield (key, result) as results come, in any
    order: an `Encoded` video or a score record, or `Failed`. Closing the iterator early cancels the work in
    flight."""

    description: str

    def device_type(self, device: str) -> str: ...

    def render(self, spec: BackendSpec, jobs: Sequence[tuple[str, SampleRequest]], batch_size: int): ...

    def judge(self, spec: JudgeSpec, jobs: Sequence[tuple[str, str, str]], batch_size: int): ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class VideoResult:
    key: str
    path: Path | None  # None when it failed
    record: dict | None
    error: str | None = None


@dataclass(frozen=True)
class ScoreResult:
    key: str
    record: dict | None  # Judgement.to_dict() and "seconds"; None when it failed
    error: str | None = None


class RenderJudge:
    """Videos and scores from `cache`, made by `executor` where missing (see the module docstring)."""

    def __init__(self, cache: Cache, executor: Executor | None = None, *, render_batch_size: int = 1,
                 judge_batch_size: int = 4, bars: Bars = lambda description, unit: nullcontext(None),
                 warn: Callable[[str], None] = lambda message: None):
        from .local import InProcess

        self.cache = cache
        self.executor = executor if executor is not None else InProcess()
        self.render_batch_size = render_batch_size
        self.judge_batch_size = judge_batch_size
        self.bars = bars
        self.warn = warn
        #: results this service made (not found in the cache), and its wall time per stage and label
        self.made = {"render": 0, "judge": 0}
        self.timings: dict[str, dict[str, float]] = {"render": {}, "judge": {}}

    # ------------------------------------------------------------------------------------------- keys

    def video_key(self, backend: BackendSpec, request: SampleRequest) -> str:
        return key(kind="video", backend=backend.identity(), device=self.executor.device_type(backend.device),
                   dtype=backend.dtype, request=asdict(request),
                   **eight_bit_part(backend_class(backend.name).info.eight_bit))

    def score_key(self, judge: JudgeSpec, video_key: str, caption: str) -> str:
        identity = judge.identity()
        if judge.family.get(judge.kind).in_process:  # where it runs changes its numbers
            identity |= {"device": self.executor.device_type(judge.options.get("device", "auto")),
                         "dtype": judge.options.get("dtype", "auto")}
        return key(kind="score", judge=identity, video=video_key, caption=caption)

    # ---------------------------------------------------------------------------------------- the work

    def videos(self, backend: BackendSpec, requests: Sequence[SampleRequest], label: str | None = None
               ) -> list[VideoResult]:
        """One result per request, from the cache or rendered now (a request given twice is rendered once)."""
        label = label or backend.name
        keys = [self.video_key(backend, request) for request in requests]
        missing = {k: r for k, r in zip(keys, requests) if self.cache.get_video(k) is None}
        errors: dict[str, str] = {}
        if missing:
            with self._timed("render", label):
                errors = self._make("render", backend, list(missing.items()), self.render_batch_size,
                                    f"rendering ({label})", self._store_video, label,
                                    lambda job: f"{job[1].prompt!r} (seed {job[1].seed})")
        results = []
        for video_key in keys:
            stored = self.cache.get_video(video_key)
            results.append(VideoResult(video_key, *stored) if stored is not None else
                           VideoResult(video_key, None, None, errors.get(video_key, "not rendered")))
        return results

    def scores(self, judge: JudgeSpec, items: Sequence[tuple[VideoResult, str]]) -> list[ScoreResult | None]:
        """A score per (video, caption) from the cache or judged now; None for a video that failed."""
        keys = [self.score_key(judge, video.key, caption) if video.path else None for video, caption in items]
        missing: dict[str, tuple[str, str, str]] = {}
        for score_key, (video, caption) in zip(keys, items):
            if score_key is not None and self.cache.get("score", score_key) is None:
                missing.setdefault(score_key, (score_key, str(video.path), caption))
        errors: dict[str, str] = {}
        if missing:
            with self._timed("judge", "judge"):
                errors = self._make("judge", judge, list(missing.values()), self.judge_batch_size, "judging",
                                    lambda score_key, record: self.cache.put("score", score_key, record), "the judge",
                                    lambda job: f"the video of {job[2]!r}")
        results: list[ScoreResult | None] = []
        for score_key in keys:
            record = self.cache.get("score", score_key) if score_key else None
            results.append(None if score_key is None else ScoreResult(score_key, record, None) if record else
                           ScoreResult(score_key, None, errors.get(score_key, "not judged")))
        return results

    def close(self) -> None:
        self.executor.close()

    # ---------------------------------------------------------------------------------------- helpers

    def _make(self, stage: str, spec, jobs: list, batch_size: int, description: str, store, label: str,
              name: Callable[[tuple], str]) -> dict[str, str]:
        """Run `jobs` ((key, ...) each) on the executor, storing each result as it comes; returns the errors of
        those that failed."""
        named = {job[0]: job for job in jobs}
        errors: dict[str, str] = {}
        with self.bars(description, "video") as bar:
            results = getattr(self.executor, stage)(spec, jobs, batch_size)
            try:
                for done, (result_key, result) in enumerate(results, 1):
                    if isinstance(result, Failed):
                        errors[result_key] = result.error
                        self.warn(f"{label} failed to {stage} {name(named[result_key])}: {result.error}")
                        if len(errors) == done >= FAILED_START:
                            noun = {"render": "renders", "judge": "judgements"}[stage]
                            raise RenderError(f"{label} failed its first {done} {noun}, the last with {result.error}")
                    else:
                        store(result_key, result)
                        self.made[stage] += 1
                    if bar:
                        bar(done, len(jobs))
            finally:
                results.close()  # an early exit (a cancel, an error) stops the work in flight
        return errors

    def _store_video(self, video_key: str, encoded) -> None:
        self.cache.put_video(video_key, encoded.data, encoded.fps, encoded.record)

    @contextmanager
    def _timed(self, stage: str, label: str) -> Iterator[None]:
        """Adds the wall time of the block to `timings[stage][label]`."""
        began = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage][label] = self.timings[stage].get(label, 0.0) + time.perf_counter() - began
