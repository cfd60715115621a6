"""A trivial video backend, installed only for the tests (tests/plugins is on their path, and its
dist-info declares the `phyprompt.video_backends` entry point). It is what a third-party backend looks
like: one module and one entry point, with no change to the nodes, the CLI or phyprompt/commands.

Its "weights" are one safetensors file holding a colour palette; a video is a seeded random walk over
that palette, different for every prompt and seed. Its "text encoder" reads 8 words.

For the tests of work in other processes (Ray workers), where a monkeypatch does not reach, two environment
variables: PHYPROMPT_TOY_RENDER_LOG names a file that gets a line "prompt<TAB>seed" per finished render, and
PHYPROMPT_TOY_HOLD names a file that, while it exists, holds the render whose "prompt<TAB>seed" it contains — in
the first process to reach it (which claims it by writing its pid to a file of the same name plus ".claimed"):
given again to another worker, the same render goes through.
"""

from __future__ import annotations

import hashlib
import os
import time

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from phyprompt.video import (BackendInfo, EightBit, LoadOption, SampleRequest, Setting, SingleFile, Video, VideoBackend,
                             VideoModelError)

WORD_LIMIT = 8


class _WordCounter:
    description = "words"

    def count(self, text: str) -> int:
        return len(text.split())


class ToyBackend(VideoBackend):
    info = BackendInfo(
        name="toy",
        display_name="Toy Video",
        node_name="ToyVideo",
        target="generic",
        summary="a palette random walk for tests",
        weights=SingleFile(suffixes=(".toy.safetensors",), folder_kinds=("toy_video",)),
        settings=(
            Setting("steps", 4, 1, 100, help="Walk steps."),
            Setting("guidance", 1.0, 0.0, 10.0, step=0.5),
            Setting("frames", 6, 1, 64),
            Setting("width", 24, 8, 1024, step=8),  # up to the real models' frames, for benchmarks
            Setting("height", 16, 8, 1024, step=8),
        ),
        schedulers=("walk", "jump"),
        fps=12.0,
        load_options=(LoadOption("brightness", "normal", ("normal", "dim")),),
        # how its "original" saves a video (a plugin that does not say gets rounding to the nearest level)
        eight_bit=EightBit("truncate", "float32"),
    )

    def __init__(self, palette: torch.Tensor, brightness: str):
        self.palette = torch.nn.Module()
        self.palette.register_buffer("colours", palette)
        self.scale = 0.5 if brightness == "dim" else 1.0

    @classmethod
    def load(cls, path, *, dtype="auto", device="auto", load_on=None, brightness="normal"):
        if not os.path.isfile(path):
            raise VideoModelError(f"toy model file not found: {path}")
        try:
            return cls(load_file(path)["palette"], brightness)
        except (OSError, KeyError, ValueError, SafetensorError) as error:
            raise VideoModelError(f"{path} is not a toy model: {error}") from None

    @classmethod
    def load_token_counter(cls, path):
        return _WordCounter()

    @property
    def token_limit(self) -> int:
        return WORD_LIMIT

    @property
    def description(self) -> str:
        return "words"

    def count(self, text: str) -> int:
        return _WordCounter().count(text)

    def modules(self):
        return {"palette": self.palette}

    @classmethod
    def check_settings(cls, settings: dict) -> None:  # known without a model: checked before one is loaded
        from phyprompt.video import VideoSettingsError

        if settings["width"] % 8 or settings["height"] % 8:
            raise VideoSettingsError("toy sizes are multiples of 8")

    def sample(self, request: SampleRequest, progress=None) -> Video:
        _hold(request)
        settings = self.settings(request)
        digest = hashlib.sha256(f"{request.prompt}\n{request.seed}\n{settings['scheduler']}".encode()).digest()
        generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
        colours = self.palette.colours
        shape = (settings["frames"], settings["height"], settings["width"])
        picks = torch.randint(len(colours), shape, generator=generator)
        for step in range(settings["steps"]):
            picks = (picks + torch.randint(2, shape, generator=generator)) % len(colours)
            if progress is not None:
                progress(step + 1, settings["steps"])
        _log(request)
        return Video(frames=(colours[picks] * self.scale).clamp(0, 1).float(), fps=self.info.fps)


def _hold(request: SampleRequest) -> None:
    hold = os.environ.get("PHYPROMPT_TOY_HOLD")
    claimed = False
    while hold and os.path.exists(hold):
        try:
            with open(hold, encoding="utf-8") as handle:
                if handle.read() != f"{request.prompt}\t{request.seed}":
                    return
        except FileNotFoundError:
            return
        if not claimed:
            try:
                claim = os.open(hold + ".claimed", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                os.write(claim, str(os.getpid()).encode())
                os.close(claim)
            except FileExistsError:
                return  # another process holds this render
            claimed = True
        time.sleep(0.05)


def _log(request: SampleRequest) -> None:
    log = os.environ.get("PHYPROMPT_TOY_RENDER_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"{request.prompt}\t{request.seed}\n")


def write_toy_model(folder: str | os.PathLike, seed: int = 0) -> str:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "palette.toy.safetensors")
    save_file({"palette": torch.rand(5, 3, generator=torch.Generator().manual_seed(seed))}, path)
    return path
