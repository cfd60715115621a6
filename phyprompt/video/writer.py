"""The one video writer: frames from any backend to .mp4 (H.264), .webp or .gif, plus A/B comparisons.

Frames follow the backend contract, which is also ComfyUI's IMAGE batch: `[T, H, W, 3]` floats in 0..1
(torch or numpy), or uint8. Writing is atomic: the encoder writes a hidden temporary file next to the
target, which is renamed over the final name only once it is complete, so a crash or a cancel never
leaves a half-written video under the name a user (or a workflow) will open.

H.264 goes through PyAV (`pip install av`); without it, through the ffmpeg binary that imageio-ffmpeg
ships. WebP and GIF go through Pillow.
"""

from __future__ import annotations

import math
import os
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from numbers import Real
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from ..infra.files import atomic_path

if TYPE_CHECKING:  # imported where frames are handled: the CLI reads SUPPORTED_SUFFIXES without torch
    import torch

Frames = Union["torch.Tensor", np.ndarray]
PathLike = str | os.PathLike[str]

SUPPORTED_SUFFIXES = (".mp4", ".webp", ".gif")
READABLE_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".gif", ".webp")

DEFAULT_CRF = 19  # x264 constant rate factor: visually near-lossless at a modest size
DEFAULT_WEBP_QUALITY = 90
SEPARATOR_LEVEL = 0.1  # the side-by-side gap: dark, but distinguishable from black video content

ROUNDINGS = ("nearest", "half_up", "truncate")
FLOAT_TYPES = ("float32", "float16", "bfloat16", "float64")


@dataclass(frozen=True)
class EightBit:
    """How float frames in 0..1 become 8-bit levels: the arithmetic of the code that saves a model's videos,
    so that a file written here holds the original's pixels for the same floats.

    `rounding`: "nearest" (x·255 rounded, halves to even: numpy's `round` and `rint`, `torch.round`),
    "half_up" (x·255 + 0.5, then cut) or "truncate" (x·255 cut toward zero: what a float tensor's
    `.to(torch.uint8)` and numpy's `astype(np.uint8)` do). `dtype`: the float type the product (and sum) is
    computed and rounded in, one of FLOAT_TYPES, as the original's tensors are: float16 keeps x·255 to 1/8 of
    a level near 255 and so lifts some pixels that float32 leaves just below a whole level. None: the frames'
    own type, a torch tensor's widened to float32 (the conversion from before backends described theirs). In a
    backend's description (`BackendInfo.eight_bit`) also "model": the type the loaded model computes its
    frames in, which `VideoBackend.eight_bit` puts in its place.
    """

    rounding: str = "nearest"
    dtype: str | None = None

    def __post_init__(self):
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"unknown 8-bit rounding {self.rounding!r}; choose one of: {', '.join(ROUNDINGS)}")
        if self.dtype is not None and self.dtype not in (*FLOAT_TYPES, "model"):
            raise ValueError(f"unknown float type {self.dtype!r} for the 8-bit conversion; choose one of: "
                             f"{', '.join(FLOAT_TYPES)}, model")


def write_video(
    frames: Frames,
    fps: float,
    path: PathLike,
    *,
    crf: int = DEFAULT_CRF,
    quality: int = DEFAULT_WEBP_QUALITY,
    lossless: bool = False,
    eight_bit: EightBit = EightBit(),
) -> Path:
    """Write `frames` ([T, H, W, 3], floats in 0..1 or uint8) at `fps` to `path`; the suffix picks the format.
    Floats become 8-bit as `eight_bit` says (see `to_uint8`); a backend's frames as its original saves them,
    with the loaded backend's `eight_bit`.

    - `.mp4`: H.264 (libx264), yuv420p, BT.709, `crf` 0..51 (lower is better; 17-23 is the useful range,
      0 is lossless but few players decode it). yuv420p stores colour per 2x2 block, so an odd width or
      height is padded to even by repeating the last column or row: the video is at most one pixel larger.
    - `.webp`: animated WebP, lossy at `quality` 0..100, or `lossless=True`.
    - `.gif`: animated GIF, 256 colours per frame; `crf`, `quality` and `lossless` do not apply. GIF
      timing has 10 ms steps and most viewers slow down frames shorter than 20 ms (fps above 50).

    Both animated formats loop forever. Parent folders are created; an existing file is replaced.
    Returns the path written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    encode = _ENCODERS.get(suffix)
    if encode is None:
        raise ValueError(f"cannot write {path.name!r}: the file suffix must be one of {', '.join(SUPPORTED_SUFFIXES)}")
    fps = _checked_fps(fps)
    if not (isinstance(crf, int) and 0 <= crf <= 51):
        raise ValueError(f"crf must be an integer from 0 (lossless) to 51 (worst), got {crf!r}; {DEFAULT_CRF} is a good default")
    if not (isinstance(quality, int) and 0 <= quality <= 100):
        raise ValueError(f"quality must be an integer from 0 to 100, got {quality!r}")
    video = to_uint8(frames, eight_bit)

    with atomic_path(path) as partial:
        encode(video, fps, partial, crf=crf, quality=quality, lossless=lossless)
    return path


def side_by_side(left: Frames, right: Frames, *, gap: int = 8) -> torch.Tensor:
    """Place two videos left | right with a `gap`-pixel dark bar between them (A/B comparisons).

    Both must have the same frame count and height; widths may differ. Returns a float `[T, H, W1+gap+W2, 3]`
    tensor in 0..1 (an IMAGE batch) on `left`'s device.
    """
    import torch

    if not (isinstance(gap, int) and gap >= 0):
        raise ValueError(f"gap must be a whole number of pixels >= 0, got {gap!r}")
    left, right = _as_float_tensor(left, "left"), _as_float_tensor(right, "right")
    right = right.to(device=left.device, dtype=left.dtype)
    if left.shape[0] != right.shape[0]:
        raise ValueError(
            f"side_by_side needs the same number of frames on both sides, got {left.shape[0]} and {right.shape[0]}; "
            "sample both videos with the same frame count"
        )
    if left.shape[1] != right.shape[1]:
        raise ValueError(
            f"side_by_side needs the same height on both sides, got {left.shape[1]} and {right.shape[1]}; "
            "sample both videos at the same resolution (or resize one first)"
        )
    frames, height = left.shape[:2]
    separator = torch.full((frames, height, gap, 3), SEPARATOR_LEVEL, dtype=left.dtype, device=left.device)
    return torch.cat([left, separator, right], dim=2)


def read_video(path: PathLike, size: tuple[int, int] | None = None) -> tuple[np.ndarray, float]:
    """Read a video back as (uint8 frames [T, H, W, 3], fps): .mp4/.webm/.mkv/.mov through PyAV, .gif/.webp
    through Pillow (their fps is the mean over the per-frame durations).

    `size` = (width, height) squashes every frame to that size (no crop, aspect ratio not kept) with FFmpeg's
    `scale` filter, bilinear. A YUV video is scaled on its decoded planes, chroma at its own resolution, in the
    same pass that converts it to RGB: what decord's `VideoReader(path, width=W, height=H)` returns, pixel for
    pixel, and not what resizing the full-size RGB frames gives. .gif/.webp frames are RGB and go through
    `scale_frames`."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in READABLE_SUFFIXES:
        raise ValueError(f"cannot read {path.name!r}: the file suffix must be one of {', '.join(READABLE_SUFFIXES)}")
    if not path.is_file():
        raise FileNotFoundError(f"no video at {path}")
    if size is not None:
        _check_size(size)
    if suffix in (".gif", ".webp"):
        frames, fps = _read_animated_image(path)
        return (frames if size is None else scale_frames(frames, size)), fps
    av = _import_pyav()
    if av is None:
        raise ImportError(f"reading {suffix} needs PyAV: pip install av")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        decoded = container.decode(stream)
        frames = ([frame.to_ndarray(format="rgb24") for frame in decoded] if size is None
                  else _scaled(av, decoded, size))
    if not frames:
        raise ValueError(f"{path} has no video frames")
    return np.stack(frames), float(rate)


def scale_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 RGB frames `[T, H, W, 3]` squashed to `size` = (width, height) by the filter `read_video` scales
    with (on RGB, which has no chroma planes, that is the bilinear resize alone; the size they have already
    returns them unchanged)."""
    _check_size(size)
    if not (isinstance(frames, np.ndarray) and frames.dtype == np.uint8):
        got = getattr(frames, "dtype", type(frames).__name__)
        raise ValueError(f"scale_frames takes uint8 frames [T, H, W, 3] as a numpy array, got {got}")
    _check_shape(frames, "frames")
    av = _import_pyav()
    if av is None:
        raise ImportError("scaling frames needs PyAV: pip install av")
    images = (av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24") for image in frames)
    return np.stack(_scaled(av, images, size))


def to_uint8(frames: Frames, eight_bit: EightBit = EightBit()) -> np.ndarray:
    """Validate a `[T, H, W, 3]` batch and return it as a contiguous uint8 numpy array.

    Floats are clamped to 0..1 and become levels 0..255 as `eight_bit` says (by default rounded to the nearest,
    in the frames' own float type); uint8 is taken as is.
    """
    import torch

    if eight_bit.dtype == "model":
        raise ValueError("the 8-bit conversion needs the model's own float type: pass the loaded backend's "
                         "eight_bit, not its description's")
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.require(frames, requirements=("C", "W")))  # a read-only array is copied
    elif isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu()
        if frames.is_floating_point() and eight_bit.dtype is None:
            frames = frames.float()
    else:
        raise TypeError(f"frames must be a torch tensor or numpy array [T, H, W, 3], got {type(frames).__name__}")
    _check_shape(frames, "frames")
    if frames.dtype == torch.uint8:
        return np.ascontiguousarray(frames.numpy())
    if not frames.is_floating_point():
        raise ValueError(
            f"frames must be floats in 0..1 or uint8 in 0..255, got {str(frames.dtype).removeprefix('torch.')}; "
            "divide by 255 as a float (or cast to uint8) first"
        )
    if not torch.isfinite(frames).all():
        raise ValueError("frames contain NaN or infinite values; the sampler diverged (try float32/bfloat16 instead of float16)")
    if eight_bit.dtype is not None:
        frames = frames.to(getattr(torch, eight_bit.dtype))
    # One operation at a time, each result rounded to the frames' type as the originals' are; the cast to
    # uint8 then cuts toward zero.
    levels = frames.clamp(0.0, 1.0) * 255
    if eight_bit.rounding == "nearest":
        levels = levels.round()
    elif eight_bit.rounding == "half_up":
        levels = (levels + 0.5).clamp(max=255)  # bfloat16 rounds 255 + 0.5 to 256, which uint8 would wrap to 0
    return levels.to(torch.uint8).numpy()


# ---------------------------------------------------------------------------------------------- encoders


def _write_mp4(video: np.ndarray, fps: float, target: Path, *, crf: int, **_unused) -> None:
    video = _pad_to_even(video)
    av = _import_pyav()
    if av is not None:
        _write_mp4_pyav(av, video, fps, target, crf)
        return
    ffmpeg = _imageio_ffmpeg_exe()
    if ffmpeg is None:
        raise ImportError("writing .mp4 needs PyAV: pip install av (or pip install imageio-ffmpeg for its ffmpeg binary)")
    _write_mp4_ffmpeg(ffmpeg, video, fps, target, crf)


def _write_mp4_pyav(av, video: np.ndarray, fps: float, target: Path, crf: int) -> None:
    from av.video.reformatter import ColorRange, Colorspace

    _, height, width, _ = video.shape
    # +faststart moves the index to the front so browsers (and ComfyUI's preview) start playing at once.
    with av.open(str(target), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=_frame_rate(fps), options={"crf": str(crf)})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # Convert with the BT.709 matrix and say so in the stream: untagged H.264 leaves the matrix to the
        # player's guess, and browsers and decoders guess differently (visible colour shifts).
        codec = stream.codec_context
        codec.colorspace, codec.color_range = Colorspace.ITU709, ColorRange.MPEG
        codec.color_primaries = codec.color_trc = 1  # BT.709 in FFmpeg's numbering
        for image in video:
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame = frame.reformat(format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))  # flush the frames x264 holds back for look-ahead


def _write_mp4_ffmpeg(ffmpeg: str, video: np.ndarray, fps: float, target: Path, crf: int) -> None:
    _, height, width, _ = video.shape
    rate = _frame_rate(fps)
    command = [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", f"{rate.numerator}/{rate.denominator}",
        "-i", "pipe:0",
        "-an", "-c:v", "libx264", "-crf", str(crf),
        # the same BT.709 conversion and tags as the PyAV path
        # (scale converts and tags the matrix and range; setparams tags the primaries and transfer)
        "-vf", "scale=out_color_matrix=bt709:out_range=tv,format=yuv420p,setparams=color_primaries=bt709:color_trc=bt709",
        "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv",
        "-movflags", "+faststart", "-f", "mp4", str(target),
    ]
    # stderr goes to a file, not a pipe: a pipe nobody reads can fill up and stall ffmpeg mid-write.
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=errors)
        try:
            try:
                for image in video:
                    process.stdin.write(image.tobytes())
            except BrokenPipeError:
                pass  # ffmpeg exited early; its exit status and message below say why
            finally:
                try:
                    process.stdin.close()
                except BrokenPipeError:
                    pass
            status = process.wait()
        except BaseException:
            process.kill()
            process.wait()
            raise
        if status != 0:
            errors.seek(0)
            message = errors.read().decode(errors="replace").strip().splitlines()
            raise RuntimeError(f"ffmpeg failed writing {target.name} (exit {status}): {message[-1] if message else 'no message'}")


def _write_webp(video: np.ndarray, fps: float, target: Path, *, quality: int, lossless: bool, **_unused) -> None:
    images = _pil_images(video)
    images[0].save(
        target, format="WEBP", save_all=True, append_images=images[1:], loop=0,
        duration=_frame_durations_ms(len(images), fps, step_ms=1), quality=quality, lossless=lossless,
    )


def _write_gif(video: np.ndarray, fps: float, target: Path, **_unused) -> None:
    images = _pil_images(video)
    # Pillow merges a frame identical to the one before into it (adding the durations): the timing is kept,
    # the frame count may drop.
    images[0].save(
        target, format="GIF", save_all=True, append_images=images[1:], loop=0,
        duration=_frame_durations_ms(len(images), fps, step_ms=10),
    )


_ENCODERS: dict[str, Callable[..., None]] = {".mp4": _write_mp4, ".webp": _write_webp, ".gif": _write_gif}


# ----------------------------------------------------------------------------------------------- helpers


def _import_pyav():
    try:
        import av
    except ImportError:
        return None
    return av


def _imageio_ffmpeg_exe() -> str | None:
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:  # the package is there but its binary is not (e.g. an unsupported platform)
        return None


def _checked_fps(fps) -> float:
    if isinstance(fps, bool) or not isinstance(fps, Real) or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number of frames per second, got {fps!r}")
    return float(fps)


def _frame_rate(fps: float) -> Fraction:
    # NTSC rates arrive as floats (29.97..., 23.976...); 1001 is the largest denominator they need.
    return Fraction(fps).limit_denominator(1001)


def _check_size(size) -> None:
    if not (isinstance(size, tuple) and len(size) == 2
            and all(isinstance(side, int) and not isinstance(side, bool) and side > 0 for side in size)):
        raise ValueError(f"size must be (width, height) in whole pixels above 0, got {size!r}")


def _scaled(av, frames, size: tuple[int, int]) -> list[np.ndarray]:
    """Each of the PyAV `frames` as RGB at `size` through libavfilter: `scale=W:H:flags=bilinear`, then
    rgb24, one swscale pass; the graph decord builds for `VideoReader(width=W, height=H)`. Measured equal to
    decord 0.6.0 (FFmpeg 4.1.6) on yuv420p/422p/444p, limited and full range, BT.601 and BT.709, odd sizes
    (benchmarks/judge_decode.py), with PyAV 14.2 (FFmpeg 7.1) and 18.1 (FFmpeg 8.1). Not `VideoFrame.reformat`,
    which sets swscale up otherwise, differently by PyAV version: 14.x converts with BT.601 whatever matrix the
    frame is tagged with, 18.x (sws_scale_frame) sites untagged 4:2:0 chroma at the left where the filter, as
    FFmpeg 4.1 did, sites it at the centre. `flags` is explicit: the filter's default was bilinear in FFmpeg
    4.1 and is bicubic in 7.1 and 8.1."""
    width, height = size
    graph = None
    images = []
    for frame in frames:
        if graph is None:  # the first frame says what the source is (size, pixel format)
            graph = av.filter.Graph()
            source = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format,
                                      time_base=frame.time_base or Fraction(1, 1))
            graph.link_nodes(source, graph.add("scale", f"{width}:{height}:flags=bilinear"),
                             graph.add("format", "rgb24"), graph.add("buffersink")).configure()
        graph.push(frame)
        images.append(graph.pull().to_ndarray())  # scaling is one frame out per frame in, with no delay
    return images


def _check_shape(frames, name: str) -> None:
    shape = tuple(frames.shape)
    if len(shape) != 4 or shape[-1] != 3:
        raise ValueError(
            f"{name} must be [T, H, W, 3] (frames, height, width, RGB), got shape {list(shape)}; "
            "add a frame axis with frames[None] for a single image, drop an alpha channel with [..., :3]"
        )
    if shape[0] == 0 or shape[1] == 0 or shape[2] == 0:
        raise ValueError(f"{name} must hold at least one frame of at least 1x1 pixels, got shape {list(shape)}")


def _as_float_tensor(frames: Frames, name: str) -> torch.Tensor:
    import torch

    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    elif not isinstance(frames, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor or numpy array [T, H, W, 3], got {type(frames).__name__}")
    _check_shape(frames, name)
    if frames.dtype == torch.uint8:
        return frames.float() / 255.0
    if not frames.is_floating_point():
        raise ValueError(f"{name} must be floats in 0..1 or uint8 in 0..255, got {frames.dtype}")
    return frames


def _pad_to_even(video: np.ndarray) -> np.ndarray:
    _, height, width, _ = video.shape
    if height % 2 == 0 and width % 2 == 0:
        return video
    return np.pad(video, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")


def _pil_images(video: np.ndarray):
    from PIL import Image

    return [Image.fromarray(image) for image in video]


def _frame_durations_ms(count: int, fps: float, *, step_ms: int) -> list[int]:
    """Per-frame durations in whole `step_ms` units whose running total tracks `i / fps` exactly,
    so 30 fps is 33, 33, 34 ms... rather than a steady 33 ms that drifts 1% slow."""
    ends = [round((index + 1) * 1000 / fps / step_ms) for index in range(count)]
    durations = [(end - start) * step_ms for start, end in zip([0] + ends[:-1], ends)]
    return [max(duration, step_ms) for duration in durations]  # a zero duration would mean "default" to viewers


def _read_animated_image(path: Path) -> tuple[np.ndarray, float]:
    from PIL import Image, ImageSequence

    with Image.open(path) as image:
        frames, durations = [], []
        for frame in ImageSequence.Iterator(image):
            frames.append(np.asarray(frame.convert("RGB")))
            durations.append(frame.info.get("duration", 0))  # WebP sets it only once the frame is loaded
    total_ms = sum(durations)
    return np.stack(frames), (1000.0 * len(frames) / total_ms if total_ms > 0 else 0.0)
