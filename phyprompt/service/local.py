"""The in-process executor (the default): one model at a time on this machine's device.

A stage loads its model, works through everything it is given back to back and releases the model before
the next stage loads its own, so a 5B video model and a 7B judge take turns on one GPU. A video is encoded
on a thread of its own while the next one renders (the encoder leaves the GIL).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from ..infra.devices import resolve_device
from ..judges.spec import JudgeSpec
from ..video.backend import SampleRequest
from ..video.spec import BackendSpec
from .work import Failed, Held, batches, encode, judge_batch, render_batch


class InProcess:
    """`keep_loaded`: keep the backend and the judge loaded between calls (the GRPO reward, called every step,
    next to the policy) instead of one model at a time (the evaluation)."""

    description = "in process"

    def __init__(self, keep_loaded: bool = False):
        self.keep_loaded = keep_loaded
        self.held = Held()

    def device_type(self, device: str) -> str:
        return resolve_device(device).type

    def render(self, spec: BackendSpec, jobs: Sequence[tuple[str, SampleRequest]],
               batch_size: int) -> Iterator[tuple[str, object]]:
        model = self.held.get("backend", spec)
        try:
            model.settings(jobs[0][1])  # what this model cannot render fails now, as bad arguments
            with ThreadPoolExecutor(1) as encoder:
                waiting: deque[tuple[str, Future]] = deque()
                for chunk in batches(jobs, batch_size):
                    try:
                        videos, seconds = render_batch(model, [request for _, request in chunk])
                    except BaseException:  # a Ctrl-C mid-render: the videos finished before it are kept
                        yield from _encoded(waiting, every=True)
                        raise
                    for (video_key, request), video in zip(chunk, videos):
                        waiting.append((video_key, _finished(video) if isinstance(video, Failed) else
                                        encoder.submit(encode, model, request, video, seconds)))
                    yield from _encoded(waiting)
                yield from _encoded(waiting, every=True)
        finally:
            self._done()

    def judge(self, spec: JudgeSpec, jobs: Sequence[tuple[str, str, str]],
              batch_size: int) -> Iterator[tuple[str, object]]:
        judge = self.held.get("judge", spec)
        try:
            for chunk in batches(jobs, batch_size):
                records = judge_batch(judge, [path for _, path, _ in chunk], [c for _, _, c in chunk], batch_size)
                yield from zip([score_key for score_key, _, _ in chunk], records)
        finally:
            self._done()

    def close(self) -> None:
        self.held.release()

    def _done(self) -> None:
        if not self.keep_loaded:  # its memory back before the next stage loads a model
            self.held.release()


def _encoded(waiting: deque[tuple[str, Future]], every: bool = False) -> Iterator[tuple[str, object]]:
    """(key, result) of the encodes at the front of `waiting` that are done; with `every`, of all of them,
    in order, each waited for."""
    while waiting and (every or waiting[0][1].done()):
        video_key, result = waiting.popleft()
        yield video_key, result.result()


def _finished(value) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future
