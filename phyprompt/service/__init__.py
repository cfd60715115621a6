"""The render-and-judge service (`RenderJudge`): videos and scores made once, kept in one content-hash cache
(`Cache`), for `phyprompt eval` and the GRPO video reward alike; in this process (`InProcess`, the default) or
on a Ray cluster (`ray_pool.RayPool`, with the optional extra `phyprompt[ray]`)."""

from .cache import Cache, key
from .local import InProcess
from .render_judge import FAILED_START, RenderError, RenderJudge, ScoreResult, VideoResult

__all__ = ["Cache", "FAILED_START", "InProcess", "RenderError", "RenderJudge", "ScoreResult", "VideoResult", "key"]
