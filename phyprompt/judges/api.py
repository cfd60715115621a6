"""The API judge: a video-capable chat model on an OpenAI-compatible server (vLLM or llama.cpp serving
Qwen2.5-VL, Ollama's qwen2.5vl, OpenAI, Gemini's compatible endpoint) asked AutoEval's questions
(`chat.py`) through the project's one HTTP client, `endpoint.ChatClient`.

Chat-completions has no video part, so each question carries `frames` frames sampled as AutoEval samples
them, as JPEG data URLs in the message's content list, then the question. Answers are greedy
(temperature 0) and read by the one parser. With `logprobs` the server is asked for its top tokens at each
answer position; a server that sends them gives the continuous score, one that does not gives
`expected=None`. A server that fails (after the client's retries) raises `EndpointError`: no score is
ever made up or reused.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np

from ..infra.endpoint import ChatClient, ServerSpec
from ..infra.kinds import KindInfo, LoadOption, Server, server_options
from ..infra.progress import OptionalProgress
from .base import Judgement, Video, check_request
from .chat import judgement, questions, reply_answer
from .frames import sample_frames
from .spec import MAX_FRAMES

DEFAULT_FRAMES = 8
#: the longest side a frame is sent at: servers scale images down to about this anyway, and it keeps a
#: request with 8 frames of a 4K video small
MAX_SIDE = 768
JPEG_QUALITY = 90
MAX_ANSWER_TOKENS = 32  # as the VLM judge's: the parser reads the first number
#: top tokens asked for per answer position (OpenAI allows up to 20); five already hold "1".."5" when
#: the model answers with a digit
TOP_LOGPROBS = 10


class APIJudge:
    """A judge on a server (a `base.Judge`). Its weights live in the server's process."""

    in_process = False
    info = KindInfo(
        node_id="PhyPromptLoadAPIJudge",
        display_name="Physics Judge (API)",
        description="Judges on an OpenAI-compatible server with image input (vLLM, Ollama, OpenAI): sampled frames "
                    "are sent as images with VideoPhy-2's questions. Nothing is loaded into ComfyUI.",
        search_aliases=("API", "Ollama", "OpenAI", "vLLM"),
        source=Server("http://127.0.0.1:8000/v1",
                      help="The server's API base (vLLM: http://127.0.0.1:8000/v1, Ollama: "
                           "http://127.0.0.1:11434/v1) or its full /chat/completions address."),
        options=(
            *server_options(
                "Qwen/Qwen2.5-VL-7B-Instruct", model_help="The vision model the server serves.",
                api_key_help="The NAME of the environment variable holding the API key (never the key itself: "
                             "widgets are saved in every workflow). Not set: no key is sent.",
                timeout_help="Seconds to wait for one answer; timeouts, 429 and 5xx are retried."),
            LoadOption("frames", None, minimum=0, maximum=MAX_FRAMES, unset=0,
                       help="Frames sent per question; 0: the API judge's own default."),
        ),
    )

    def __init__(self, client: ChatClient, *, frames: int = DEFAULT_FRAMES, logprobs: bool = True):
        if frames < 1:
            raise ValueError(f"frames must be at least 1, not {frames}")
        self.client, self.frames, self.logprobs = client, frames, logprobs
        self.name = client.model

    @classmethod
    def load(cls, server: ServerSpec, *, frames: int = DEFAULT_FRAMES, logprobs: bool = True) -> "APIJudge":
        """The server is first contacted by `judge`. `logprobs=False` for a server that refuses the `logprobs`
        field."""
        return cls(ChatClient(server), frames=frames, logprobs=logprobs)

    def judge(self, videos: Sequence[Video], captions: Sequence[str], *,
              rules: Sequence[Sequence[str]] | None = None, batch_size: int = 1,
              progress: OptionalProgress = None) -> list[Judgement]:
        """See `base.Judge.judge`. A batch's questions are sent together (up to the client's
        `max_concurrency` at a time); `progress` is also called while waiting, so a cancel is prompt."""
        check_request(videos, captions, rules, batch_size)
        rules = [list(r) for r in rules] if rules is not None else [[] for _ in videos]
        total = len(videos)
        results: list[Judgement] = []
        for start in range(0, total, batch_size):
            batch = range(start, min(start + batch_size, total))
            asked, conversations, counts = [], [], []
            for i in batch:
                frames, count = sample_frames(videos[i], self.frames)
                images = [_image_part(frame) for frame in frames]
                asked.append(questions(captions[i], rules[i]))
                conversations += [[{"role": "user", "content": [*images, {"type": "text", "text": q.text}]}]
                                  for q in asked[-1]]
                counts.append(count)
            waiting = (lambda done, _questions: progress(start, total)) if progress else None
            replies = iter(self.client.replies(conversations, temperature=0.0, max_tokens=MAX_ANSWER_TOKENS,
                                               top_logprobs=TOP_LOGPROBS if self.logprobs else None,
                                               progress=waiting))
            for i, qs, count in zip(batch, asked, counts):
                answers = [reply_answer(next(replies), question.values) for question in qs]
                results.append(judgement(captions[i], rules[i], answers, judge=self.name, frames=count,
                                         shown=self.frames))
            if progress:
                for i in batch:
                    progress(i + 1, total)
        return results

    def modules(self) -> None:
        """None: the weights live on the server."""

    def release(self) -> None:
        """Nothing to free: each request opens and closes its own connection."""


def _image_part(frame: np.ndarray) -> dict:
    """One uint8 frame [H, W, 3] as a chat-completions image part: a JPEG data URL, at most MAX_SIDE."""
    from PIL import Image

    image = Image.fromarray(frame)
    image.thumbnail((MAX_SIDE, MAX_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return {"type": "image_url",
            "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()}}
