"""A trivial video backend, installed only for the tests (tests/plugins is on their path, and its
dist-info declares the `phyprompt.video_backends` entry point). It is what a third-party backend looks
like: one module and one entry point, with no change to the nodes, the CLI or phyprompt/commands.

Its "weights" are one safetensors file holding a colour palette; a video is a seeded random walk over
that palette, different for every prompt and seed. Its "text encoder" reads 8 words.
"""

from __future__ import annotations

import hashlib
import os

import torch
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
            Setting("width", 24, 8, 256, step=8),
            Setting("height", 16, 8, 256, step=8),
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
        return cls(load_file(path)["palette"], brightness)

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
        return Video(frames=(colours[picks] * self.scale).clamp(0, 1).float(), fps=self.info.fps)


def write_toy_model(folder: str | os.PathLike, seed: int = 0) -> str:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "palette.toy.safetensors")
    save_file({"palette": torch.rand(5, 3, generator=torch.Generator().manual_seed(seed))}, path)
    return path
