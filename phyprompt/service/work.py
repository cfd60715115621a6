"""What runs where the models are, the same in this process and in a Ray worker: render a batch of requests
into encoded video files, judge a batch of video files. A batch that fails is tried item by item, so one bad
item costs only its own result (a `Failed` in its place); a cancel (`Cancelled`, Ctrl-C) is never swallowed.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..infra.progress import Cancelled


@dataclass(frozen=True)
class Failed:
    """An item that failed on its own (a render or judgement that raised): `"ErrorType: message"`."""

    error: str

    @classmethod
    def of(cls, error: BaseException) -> Failed:
        return cls(f"{type(error).__name__}: {error}")


@dataclass(frozen=True)
class Encoded:
    """A rendered video as the bytes of its file (written by the one video writer, 8-bit levels as the
    backend's original makes them) and its record for the cache."""

    data: bytes
    fps: float
    record: dict


class Held:
    """The models a process keeps loaded between calls: at most one per family ("backend", "judge"), until a
    call names another spec of that family (the old one is released first) or `release` frees them all."""

    def __init__(self):
        self.models: dict[str, tuple[object, object]] = {}

    def get(self, family: str, spec):
        held = self.models.get(family)
        if held is not None and held[0] == spec:
            return held[1]
        if held is not None:
            del self.models[family]
            held[1].release()
        model = spec.open()
        self.models[family] = (spec, model)
        return model

    def release(self) -> None:
        while self.models:
            _, (_, model) = self.models.popitem()
            model.release()


def batches(jobs: Sequence, size: int) -> list[list]:
    """`jobs` in consecutive batches of at most `size`."""
    return [list(jobs[start:start + size]) for start in range(0, len(jobs), size)]


def each_or_alone(work: Callable[[list], Sequence], items: list) -> list:
    """`work(items)`, one result per item; when that raises, each item alone, with a `Failed` in the place
    of an item that still raises."""
    try:
        return list(work(items))
    except Cancelled:
        raise
    except Exception as error:  # KeyboardInterrupt is no Exception: a Ctrl-C travels on
        if len(items) == 1:
            return [Failed.of(error)]
    results = []
    for item in items:
        try:
            results.extend(work([item]))
        except Cancelled:
            raise
        except Exception as error:
            results.append(Failed.of(error))
    return results


def render_batch(model, requests: list) -> tuple[list, float]:
    """Each request's `Video` (or `Failed`), rendered together where the backend can (`sample_batch`), and the
    seconds per video."""
    began = time.perf_counter()
    videos = each_or_alone(model.sample_batch, requests)
    return videos, (time.perf_counter() - began) / len(requests)


def encode(model, request, video, seconds: float) -> Encoded:
    """The video as an mp4 file's bytes, with what the cache keeps of it."""
    from ..video.writer import write_video

    with tempfile.TemporaryDirectory(prefix="phyprompt-video-") as folder:
        path = write_video(video.frames, video.fps, Path(folder) / "video.mp4", eight_bit=model.eight_bit)
        data = path.read_bytes()
    record = {"backend": model.info.name, "token_limit": model.token_limit, "prompt": request.prompt,
              "seed": request.seed, "settings": model.settings(request), "seconds": seconds}
    return Encoded(data, float(video.fps), record)


def judge_batch(judge, paths: list[str], captions: list[str], batch_size: int) -> list:
    """Each video's score record (`Judgement.to_dict()` and the seconds per video) or `Failed`."""
    began = time.perf_counter()
    judgements = each_or_alone(lambda pairs: judge.judge([p for p, _ in pairs], [c for _, c in pairs],
                                                         batch_size=batch_size), list(zip(paths, captions)))
    seconds = (time.perf_counter() - began) / len(paths)
    return [j if isinstance(j, Failed) else j.to_dict() | {"seconds": seconds} for j in judgements]
