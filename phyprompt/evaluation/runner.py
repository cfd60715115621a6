"""Refine, render, judge: the three stages of an evaluation, each batched, cached and resumable.

Refinements are made here; videos and scores by the render-and-judge service (`phyprompt.service`), in this
process or on a Ray pool. Every result is looked up in the one cache under a key of everything that
determines it, and only what is missing is made. In process, each stage loads one model, works through
everything missing back to back, stores each result as soon as it exists and releases the model before the
next stage loads its own, so a 7B refiner, a 5B video model and the 7B judge take turns on one GPU. A kill or
a Ctrl-C loses at most the work in flight; the next run finds the rest in the cache, and a run with nothing
missing loads no model at all.

A refinement's key: the refiner's identity (weights by content; device and dtype for a local one), the exact
messages it is sent (the caption and the instruction for the backend's target), the backend's weights (its
tokenizer counts the budget) and max_new_tokens. Refiners decode greedily, so one refinement per prompt
serves every video seed. Videos and scores are keyed by the service (see `service.render_judge`); two
refiners that give the same prompt (a fallback to the original, say) share one video.

Failures that say nothing about a refiner or a video model are recorded, not cached, and the run goes on:
a server that fails for a prompt gives a fallback to the original prompt (counted in the parse rate); a
backend that fails for a prompt leaves that video out of the scores (counted as a failed render). The next
run tries them again. A backend whose first renders all fail stops the run: that is not one bad prompt.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field

from ..infra.endpoint import EndpointError
from ..judges.spec import JudgeSpec
from ..language.instruction import build_messages
from ..language.targets import get_target
from ..refiners.base import DEFAULT_MAX_NEW_TOKENS, Refinement
from ..service.cache import Cache, key
from ..service.render_judge import Bars, Executor, RenderJudge, VideoResult
from ..video.backend import SampleRequest, backend_class
from .specs import Compared


@dataclass(frozen=True)
class RenderSettings:
    """What every video of the run shares; None takes each backend's own default."""

    seeds: tuple[int, ...] = (0,)
    negative_prompt: str = ""
    steps: int | None = None
    guidance: float | None = None
    frames: int | None = None
    width: int | None = None
    height: int | None = None
    scheduler: str | None = None

    def request(self, prompt: str, seed: int) -> SampleRequest:
        settings = {k: v for k, v in asdict(self).items() if k != "seeds"}
        return SampleRequest(prompt=prompt, seed=seed, **settings)


@dataclass
class Sample:
    """One (refiner, backend, caption, seed) of the run and what became of it."""

    refiner: str
    backend: str
    caption: str
    seed: int
    prompt: str  # what the video model was given
    refinement: dict | None  # Refinement.to_dict() plus "seconds" and "cached"; None for the original
    video: str  # the video's cache key
    video_path: str | None = None
    render_seconds: float | None = None
    render_error: str | None = None
    score: dict | None = None  # Judgement.to_dict() plus "seconds"
    judge_error: str | None = None


@dataclass
class Evaluation:
    cache: Cache
    captions: Sequence[str]
    refiners: Sequence[Compared]  # RefinerSpecs, and None for the original prompts
    backends: Sequence[Compared]  # BackendSpecs
    judge: JudgeSpec
    settings: RenderSettings = RenderSettings()
    #: where the specs place their models, as they were built with it: the caches are keyed by it resolved
    device: str = "auto"
    dtype: str = "auto"
    judge_batch_size: int = 4
    refiner_batch_size: int = 8
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    bars: Bars = lambda description, unit: nullcontext(None)
    warn: Callable[[str], None] = lambda message: None
    #: where videos are rendered and judged (`service.InProcess` when None, or a `service.ray_pool.RayPool`)
    executor: Executor | None = None
    #: this run's wall time per stage and label (loading and releasing models included)
    timings: dict[str, dict[str, float]] = field(default_factory=lambda: {"refine": {}, "render": {}, "judge": {}})
    #: how many results this run made (not found in the cache), per stage
    made: dict[str, int] = field(default_factory=lambda: {"refine": 0, "render": 0, "judge": 0})
    #: per backend label, the tokens its model's text encoder reads: the loaded model's `token_limit`, which
    #: its videos' records keep for a run that finds them all in the cache (not the target's nominal budget)
    token_limits: dict[str, int] = field(default_factory=dict)

    def run(self) -> list[Sample]:
        """All samples, refined, rendered and judged; only what the cache lacks is made."""
        self._device = _device_name(self.device)
        if self.captions:  # every video has the run's settings: what no model can render fails before any loads
            request = self.settings.request(self.captions[0], self.settings.seeds[0])
            for backend in self.backends:
                backend_class(backend.spec.name).check_request(request)
        self.counters = {b.label: backend_class(b.spec.name).load_token_counter(b.spec.path) for b in self.backends}
        self.service = RenderJudge(self.cache, self.executor, judge_batch_size=self.judge_batch_size,
                                   bars=self.bars, warn=self.warn)
        refinements = self._refine()
        samples = self._plan(refinements)
        try:
            self._render(samples)
            self._judge(samples)
        finally:
            for stage in ("render", "judge"):
                self.timings[stage] = self.service.timings[stage]
                self.made[stage] = self.service.made[stage]
        return samples

    # ---------------------------------------------------------------------------------------- refine

    def _refinement_key(self, refiner: Compared, backend: Compared, caption: str) -> str:
        identity = refiner.spec.identity() | self._placement(refiner.spec)
        target = backend_class(backend.spec.name).info.target
        return key(kind="refinement", refiner=identity, messages=build_messages(caption, get_target(target)),
                   budget=backend.spec.identity()["model"], max_new_tokens=self.max_new_tokens)

    def _placement(self, spec) -> dict:
        """The run's device (resolved) and dtype, for a model in this process: they change its results."""
        return {"device": self._device, "dtype": self.dtype} if spec.family.get(spec.kind).in_process else {}

    def _refine(self) -> dict[tuple[str, str, str], dict]:
        """(refiner, backend, caption) -> refinement record, for every refiner but the original."""
        found: dict[tuple[str, str, str], dict] = {}
        for spec in self.refiners:
            if spec.spec is None:  # the original prompts
                continue
            todo: dict[str, list[tuple[str, str]]] = {}  # backend label -> [(caption, key)]
            for backend in self.backends:
                for caption in self.captions:
                    record_key = self._refinement_key(spec, backend, caption)
                    record = self.cache.get("refinement", record_key)
                    if record is None:
                        todo.setdefault(backend.label, []).append((caption, record_key))
                    else:
                        found[spec.label, backend.label, caption] = record | {"cached": True}
            if todo:
                started = time.perf_counter()
                self._refine_missing(spec, todo, found)
                self.timings["refine"][spec.label] = time.perf_counter() - started
        return found

    def _refine_missing(self, spec: Compared, todo: dict[str, list[tuple[str, str]]], found: dict) -> None:
        total, done = sum(map(len, todo.values())), 0
        refiner = spec.spec.open()
        try:
            with self.bars(f"refining ({spec.label})", "prompt") as bar:
                for backend in self.backends:
                    jobs = todo.get(backend.label, [])
                    for start in range(0, len(jobs), self.refiner_batch_size):
                        chunk = jobs[start:start + self.refiner_batch_size]
                        began = time.perf_counter()
                        results = self._refine_chunk(refiner, [caption for caption, _ in chunk], backend)
                        seconds = (time.perf_counter() - began) / len(chunk)
                        for (caption, record_key), (result, lasting) in zip(chunk, results):
                            record = result.to_dict() | {"seconds": seconds}
                            if lasting:
                                self.cache.put("refinement", record_key, record)
                                self.made["refine"] += 1
                            found[spec.label, backend.label, caption] = record | {"cached": False}
                        done += len(chunk)
                        if bar:
                            bar(done, total)
        finally:
            refiner.release()  # frees its memory (weights, caches) before the next stage loads its model

    def _refine_chunk(self, refiner, captions: list[str], backend: Compared) -> list[tuple[Refinement, bool]]:
        """Each caption's refinement and whether it is a lasting result (worth caching). A server that
        fails for a chunk is asked prompt by prompt; a prompt it still fails for falls back to the original
        prompt, recorded as such and not cached (the next run asks again)."""
        target = get_target(backend_class(backend.spec.name).info.target)
        counter = self.counters[backend.label]
        options = dict(target=target, max_new_tokens=self.max_new_tokens, target_tokenizer=counter)
        if refiner.in_process:
            options["batch_size"] = len(captions)
        try:
            return [(result, True) for result in refiner.refine(captions, **options)]
        except EndpointError as error:
            if len(captions) > 1:
                return [pair for caption in captions for pair in self._refine_chunk(refiner, [caption], backend)]
            self.warn(f"the refiner {refiner.name} failed for {captions[0]!r}; using the original prompt: {error}")
            caption = captions[0]
            return [(Refinement(original=caption, prompt=caption, reasoning="", ok=False,
                                error=f"the refiner's server failed: {error}", target=target.name,
                                tokens=counter.count(caption), token_limit=target.token_limit,
                                token_counter=counter.description), False)]

    # ---------------------------------------------------------------------------- render and judge

    def _plan(self, refinements: dict) -> list[Sample]:
        samples = []
        for backend in self.backends:
            for spec in self.refiners:
                for caption in self.captions:
                    refinement = refinements.get((spec.label, backend.label, caption))
                    prompt = refinement["prompt"] if refinement else caption
                    for seed in self.settings.seeds:
                        request = self.settings.request(prompt, seed)
                        samples.append(Sample(spec.label, backend.label, caption, seed, prompt, refinement,
                                              self.service.video_key(backend.spec, request)))
        return samples

    def _render(self, samples: list[Sample]) -> None:
        for backend in self.backends:
            own = [s for s in samples if s.backend == backend.label]
            videos = self.service.videos(backend.spec, [self.settings.request(s.prompt, s.seed) for s in own],
                                         label=backend.label)
            for sample, video in zip(own, videos):
                sample.video_path = str(video.path) if video.path else None
                sample.render_error = video.error
                if video.record is not None:
                    sample.render_seconds = video.record.get("seconds")
                    if "token_limit" in video.record:  # records from before it was kept have none
                        self.token_limits.setdefault(backend.label, video.record["token_limit"])

    def _judge(self, samples: list[Sample]) -> None:
        rendered = [s for s in samples if s.video_path]
        videos = [VideoResult(s.video, s.video_path, None) for s in rendered]
        for sample, score in zip(rendered, self.service.scores(self.judge, list(zip(videos, [s.caption for s in
                                                                                           rendered])))):
            sample.score, sample.judge_error = score.record, score.error


def _device_name(device: str) -> str:
    from ..infra.devices import resolve_device

    return str(resolve_device(device))

