#!/usr/bin/env python
"""The AutoEval's video decoding vs the reference's (decord), on yuv420p clips with saturated colour edges.

VideoPhy-2's reference reads a video with decord, `VideoReader(path, width=224, height=224)`: FFmpeg scales
each decoded YUV frame to 224×224 while converting it to RGB. decord runs in its own environment
(`--decord-python`, e.g. a venv with `pip install decord numpy`; it is no dependency of this project) and
reads every clip; this side reads the same files the old way (RGB at full size, then torch's antialiased
bilinear resize, rounded) and the new way (`read_video(size=(224, 224))`, FFmpeg's scale filter as decord
builds it). The table shows max and mean |Δ| in 8-bit levels against decord's frames over all frames and
channels. Then the tiny random AutoEval (tests/support/tiny_autoeval.py, fp32) judges each clip's 32 sampled
frames from each reader: the largest change of a first-answer logit (SA and PC prompts) and of the
expected SA/PC score, against decord's pixels. Random weights say nothing about the real judge's
sensitivity; a zero says the pixels are the same.

    python benchmarks/judge_decode.py --decord-python /tmp/decord-venv/bin/python [--frames 12]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# VideoCrafter2/LaVie (512×320), CogVideoX (720×480), a square, 224×224 (no resize), odd (padded to even by
# the writer), smaller than 224 (upscaled)
SIZES = [(512, 320), (720, 480), (256, 256), (224, 224), (333, 197), (160, 96)]
PATTERNS = ("scene", "stripes", "checker", "blocks")
CAPTION = "a red rubber ball falls onto a wooden floor and bounces, each bounce lower than the last"


def pattern(name: str, frames: int, height: int, width: int):
    """Saturated colours meeting at sharp edges, moving from frame to frame: a scene (a smooth background, a
    red ball, a blue box, a thin green bar: few edges, as in a generated video), RGB stripes 7 px wide, a
    red/blue checkerboard of 5 px, random primaries/secondaries in 9 px blocks (edges everywhere)."""
    import numpy as np

    y, x = np.mgrid[0:height, 0:width]
    colours = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255),
                        (255, 255, 255), (0, 0, 0)], np.uint8)
    rng = np.random.default_rng(0)
    video = np.zeros((frames, height, width, 3), np.uint8)
    for t in range(frames):
        if name == "scene":
            video[t, ..., 0] = 40 + 60 * y // height
            video[t, ..., 1] = 90 + 100 * y // height
            video[t, ..., 2] = 200 - 40 * x // width
            ball = (x - width * (0.3 + 0.04 * t)) ** 2 + (y - height * 0.6) ** 2 < (height / 6) ** 2
            box = (abs(x - width * 0.7) < width / 10) & (abs(y - height * (0.3 + 0.02 * t)) < height / 8)
            video[t][ball], video[t][box] = colours[0], colours[2]
            video[t][(y > height * 0.85) & (y < height * 0.85 + 3)] = colours[1]
        elif name == "stripes":
            video[t] = colours[((x + 3 * t) // 7) % 3]
        elif name == "checker":
            video[t] = colours[np.where((((x + t) // 5) + y // 5) % 2 == 0, 0, 2)]
        else:
            video[t] = colours[rng.integers(0, len(colours), (height // 9 + 1, width // 9 + 1))][y // 9, x // 9]
    return video


def _decord_worker(folder: str) -> dict:
    """In decord's environment: every clip at 224×224, all frames, saved beside it; the seconds reading took;
    decord's FFmpeg version."""
    import ctypes

    import decord
    import numpy as np

    seconds = 0.0
    for path in sorted(glob.glob(os.path.join(folder, "*.mp4"))):
        start = time.perf_counter()
        reader = decord.VideoReader(path, width=224, height=224)
        frames = reader.get_batch(list(range(len(reader)))).asnumpy()
        seconds += time.perf_counter() - start
        np.save(path[:-4] + ".decord.npy", frames)
    libs = os.path.join(os.path.dirname(os.path.dirname(decord.__file__)), "decord.libs")
    avutil = glob.glob(os.path.join(libs, "libavutil*.so*"))
    version = "unknown"
    if avutil:
        info = ctypes.CDLL(avutil[0]).av_version_info
        info.restype = ctypes.c_char_p
        version = info().decode()
    return {"decord": decord.__version__, "ffmpeg": version, "seconds": seconds}


def _old_read(path: str):
    """What the judge did before: RGB frames at full size (PyAV), then torch's antialiased bilinear, rounded."""
    import torch
    import torch.nn.functional as F

    from phyprompt.video.writer import read_video

    frames = read_video(path)[0]
    if frames.shape[1:3] == (224, 224):
        return frames
    pixels = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    resized = F.interpolate(pixels, size=(224, 224), mode="bilinear", align_corners=False, antialias=True)
    return resized.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _new_read(path: str):
    from phyprompt.video.writer import read_video

    return read_video(path, size=(224, 224))[0]


def _first_answers(judge, frames) -> tuple:
    """(first-answer logits [2, vocab] for the SA and PC prompts, expected SA and PC scores) of 224×224 frames."""
    import torch

    from phyprompt.judges.frames import autoeval_pixels
    from phyprompt.judges.scores import SCALE_VALUES, expected_score
    from phyprompt.judges.templates import pc_prompt, sa_prompt
    from phyprompt.judges.videophy2.decoding import greedy_decode

    model, tokenizer = judge.model, judge.tokenizer
    with torch.inference_mode():
        tokens = model.encode_videos(autoeval_pixels(frames)[None].to(model.dtype))[0]
        prompts = [tokenizer.prompt(text, model.config.video_tokens) for text in (sa_prompt(CAPTION), pc_prompt())]
        embeds = [model.embed_prompt(p.before, tokens, p.after) for p in prompts]
        logits = greedy_decode(model.language_model, embeds, eos_id=tokenizer.eos_id, max_length=2).first_logits
    ids = [tokenizer.token_id(str(v)) for v in SCALE_VALUES]
    return logits, [expected_score(row[ids], SCALE_VALUES) for row in logits]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decord-python", required=True, help="the Python of an environment with decord")
    parser.add_argument("--frames", type=int, default=12, help="frames per clip")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_decord_worker(args.worker)))
        return

    sys.path[:0] = [REPO, os.path.join(REPO, "tests")]
    import av
    import numpy as np

    from phyprompt.judges import judge_class
    from phyprompt.judges.frames import sample_indices
    from phyprompt.video.writer import write_video
    from support.tiny_autoeval import write_tiny_autoeval

    with tempfile.TemporaryDirectory() as folder:
        for width, height in SIZES:
            for name in PATTERNS:
                write_video(pattern(name, args.frames, height, width), 8,
                            os.path.join(folder, f"{name}_{width}x{height}.mp4"))
        output = subprocess.run([args.decord_python, os.path.abspath(__file__), "--decord-python", args.decord_python,
                                 "--worker", folder], check=True, capture_output=True, text=True).stdout
        versions = json.loads(output.strip().splitlines()[-1])
        judge = judge_class("videophy2").load(write_tiny_autoeval(os.path.join(folder, "videophy_2_auto")),
                                              device="cpu", dtype="fp32", max_length=2)
        rows, seconds = [], {"old": 0.0, "new": 0.0}
        for width, height in SIZES:
            for name in PATTERNS:
                path = os.path.join(folder, f"{name}_{width}x{height}.mp4")
                decord_frames = np.load(path[:-4] + ".decord.npy")
                read = {}
                for method, reader in (("old", _old_read), ("new", _new_read)):
                    start = time.perf_counter()
                    read[method] = reader(path)
                    seconds[method] += time.perf_counter() - start
                picked = sample_indices(len(decord_frames))
                reference_logits, reference_scores = _first_answers(judge, decord_frames[picked])
                row = {"size": f"{width}x{height}", "pattern": name}
                for method, frames in read.items():
                    if frames.shape != decord_frames.shape:
                        raise SystemExit(f"{path}: {method} read {frames.shape}, decord {decord_frames.shape}")
                    delta = np.abs(frames.astype(np.int16) - decord_frames.astype(np.int16))
                    logits, scores = _first_answers(judge, frames[picked])
                    row[method] = dict(max=int(delta.max()), mean=float(delta.mean()),
                                       logit=float((logits - reference_logits).abs().max()),
                                       score=max(abs(a - b) for a, b in zip(scores, reference_scores)))
                rows.append(row)

    print(f"decord {versions['decord']} (FFmpeg {versions['ffmpeg']}) vs this side: PyAV {av.__version__} "
          f"(FFmpeg {av.ffmpeg_version_info}); {len(SIZES) * len(PATTERNS)} yuv420p H.264 clips of {args.frames} "
          "frames written by phyprompt's writer (BT.709, crf 19), read at 224x224")
    print("|Δ| in 8-bit levels over all frames and channels; logit/score: largest change of the tiny random "
          "AutoEval's first-answer logits (SA, PC) and expected scores against decord's pixels")
    header = f"{'clip':>9} {'pattern':8} | {'old max':>7} {'old mean':>8} {'logit':>7} {'score':>7} | " \
             f"{'new max':>7} {'new mean':>8} {'logit':>7} {'score':>7}"
    print(header)
    print("-" * len(header))
    for row in rows:
        cells = [f"{row[m]['max']:7d} {row[m]['mean']:8.3f} {row[m]['logit']:7.4f} {row[m]['score']:7.4f}"
                 for m in ("old", "new")]
        print(f"{row['size']:>9} {row['pattern']:8} | {cells[0]} | {cells[1]}")
    print(f"reading all clips (every frame): old {seconds['old']:.2f} s, new {seconds['new']:.2f} s, "
          f"decord {versions['seconds']:.2f} s")


if __name__ == "__main__":
    main()
