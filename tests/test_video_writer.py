"""The video writer: real files written, read back and compared with what went in."""

import sys

import numpy as np
import pytest
import torch

from phyprompt.video import writer
from phyprompt.video.writer import (
    SEPARATOR_LEVEL,
    EightBit,
    read_video,
    side_by_side,
    to_uint8,
    write_video,
)

# H.264 is lossy: a smooth video must come back within this mean absolute error (0..255 levels)
MP4_TOLERANCE = 8


def moving_square(frames=12, height=64, width=96) -> torch.Tensor:
    """A smooth colour gradient with a bright square moving across it: float [T, H, W, 3] in 0..1."""
    y, x = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    video = torch.empty(frames, height, width, 3)
    for t in range(frames):
        video[t, ..., 0] = x
        video[t, ..., 1] = y
        video[t, ..., 2] = t / max(frames - 1, 1)
        left = 4 + t * (width - 20) // max(frames - 1, 1)
        video[t, 8:24, left:left + 16] = 0.95
    return video


def mean_error(decoded: np.ndarray, original) -> float:
    expected = to_uint8(original).astype(np.float64)
    return float(np.abs(decoded.astype(np.float64) - expected).mean())


def only_file(folder):
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------------------------- mp4


def test_mp4_round_trip_keeps_frames_size_fps_and_pixels(tmp_path):
    video = moving_square()
    path = write_video(video, 24, tmp_path / "clip.mp4")
    assert path == tmp_path / "clip.mp4"
    frames, fps = read_video(path)
    assert frames.dtype == np.uint8 and frames.shape == (12, 64, 96, 3)
    assert fps == pytest.approx(24, abs=1e-3)
    assert mean_error(frames, video) < MP4_TOLERANCE


@pytest.mark.parametrize("fps", [29.97, 30000 / 1001, 7.5])
def test_mp4_keeps_fractional_frame_rates(tmp_path, fps):
    frames, read_fps = read_video(write_video(moving_square(frames=4), fps, tmp_path / "clip.mp4"))
    assert len(frames) == 4
    assert read_fps == pytest.approx(fps, rel=1e-4)


def test_mp4_pads_odd_sizes_to_even_by_repeating_the_edge(tmp_path):
    video = moving_square(frames=5, height=33, width=47)
    frames, _ = read_video(write_video(video, 8, tmp_path / "odd.mp4"))
    assert frames.shape == (5, 34, 48, 3)
    assert mean_error(frames[:, :33, :47], video) < MP4_TOLERANCE
    # the extra row and column repeat their neighbours (up to compression)
    assert np.abs(frames[:, 33].astype(int) - frames[:, 32].astype(int)).mean() < MP4_TOLERANCE
    assert np.abs(frames[:, :, 47].astype(int) - frames[:, :, 46].astype(int)).mean() < MP4_TOLERANCE


def test_mp4_accepts_uint8_numpy_and_bfloat16_tensors(tmp_path):
    video = moving_square(frames=3)
    as_uint8 = to_uint8(video)
    frames, _ = read_video(write_video(as_uint8, 8, tmp_path / "u8.mp4"))
    assert mean_error(frames, video) < MP4_TOLERANCE
    frames, _ = read_video(write_video(video.to(torch.bfloat16), 8, tmp_path / "bf16.mp4"))
    assert mean_error(frames, video) < MP4_TOLERANCE


def test_mp4_is_tagged_bt709_so_players_decode_the_colours_it_was_encoded_with(tmp_path):
    import av

    with av.open(str(write_video(moving_square(frames=2), 8, tmp_path / "c.mp4"))) as container:
        codec = container.streams.video[0].codec_context
        assert (codec.name, codec.pix_fmt) == ("h264", "yuv420p")
        tags = (codec.colorspace, codec.color_range, codec.color_primaries, codec.color_trc)
        assert [int(tag) for tag in tags] == [1, 1, 1, 1]  # BT.709 everywhere, limited ("tv") range


def test_mp4_without_pyav_falls_back_to_the_imageio_ffmpeg_binary(tmp_path, monkeypatch):
    import imageio_ffmpeg  # noqa: F401 - a test dependency (tests/requirements.txt): fail, don't skip, without it

    video = moving_square(frames=6, height=33, width=47)
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError
        path = write_video(video, 12, tmp_path / "fallback.mp4")
    frames, fps = read_video(path)
    assert frames.shape == (6, 34, 48, 3)
    assert fps == pytest.approx(12)
    assert mean_error(frames[:, :33, :47], video) < MP4_TOLERANCE
    assert only_file(tmp_path) == ["fallback.mp4"]


def test_mp4_without_pyav_or_imageio_ffmpeg_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    with pytest.raises(ImportError, match="pip install av"):
        write_video(moving_square(frames=2), 8, tmp_path / "clip.mp4")
    assert only_file(tmp_path) == []


def test_ffmpeg_failure_reports_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)
    monkeypatch.setattr(writer, "_imageio_ffmpeg_exe", lambda: "false")  # a "binary" that exits 1 at once
    with pytest.raises(RuntimeError, match="ffmpeg failed"):
        write_video(moving_square(frames=2), 8, tmp_path / "clip.mp4")
    assert only_file(tmp_path) == []


# ------------------------------------------------------------------------------------- webp and gif


def test_webp_frame_count_and_durations(tmp_path):
    from PIL import Image

    video = moving_square(frames=10)
    path = write_video(video, 8, tmp_path / "clip.webp")
    frames, fps = read_video(path)
    assert frames.shape == (10, 64, 96, 3)
    assert fps == pytest.approx(8)
    assert mean_error(frames, video) < MP4_TOLERANCE
    with Image.open(path) as image:
        assert image.info["loop"] == 0


def test_webp_durations_add_up_exactly_at_30_fps(tmp_path):
    from PIL import Image, ImageSequence

    path = write_video(moving_square(frames=9), 30, tmp_path / "clip.webp")
    with Image.open(path) as image:
        durations = []
        for frame in ImageSequence.Iterator(image):
            frame.load()
            durations.append(frame.info["duration"])
    assert set(durations) <= {33, 34} and sum(durations) == 300


def test_lossless_webp_is_exact(tmp_path):
    video = moving_square(frames=4)
    frames, _ = read_video(write_video(video, 8, tmp_path / "clip.webp", lossless=True))
    assert np.array_equal(frames, to_uint8(video))


def test_gif_frame_count_durations_and_loop(tmp_path):
    from PIL import Image, ImageSequence

    video = moving_square(frames=8)
    path = write_video(video, 8, tmp_path / "clip.gif")
    frames, fps = read_video(path)
    assert frames.shape == (8, 64, 96, 3)
    assert fps == pytest.approx(8)
    assert mean_error(frames, video) < 2 * MP4_TOLERANCE  # 256-colour palette
    with Image.open(path) as image:
        assert image.info["loop"] == 0
        durations = [frame.info["duration"] for frame in ImageSequence.Iterator(image)]
    # GIF counts in 10 ms steps: 125 ms frames alternate 120 and 130 and stay exact over time
    assert set(durations) == {120, 130} and sum(durations) == 1000


def test_suffix_is_case_insensitive(tmp_path):
    frames, _ = read_video(write_video(moving_square(frames=2), 8, tmp_path / "CLIP.GIF"))
    assert len(frames) == 2


# ------------------------------------------------------------------------------------- side by side


def test_side_by_side_places_left_gap_right():
    left, right = moving_square(frames=5, height=32, width=40), moving_square(frames=5, height=32, width=24)
    combined = side_by_side(left, 1 - right, gap=8)
    assert combined.shape == (5, 32, 40 + 8 + 24, 3) and combined.dtype == torch.float32
    assert torch.equal(combined[:, :, :40], left)
    assert torch.all(combined[:, :, 40:48] == SEPARATOR_LEVEL)
    assert torch.equal(combined[:, :, 48:], 1 - right)


def test_side_by_side_takes_uint8_and_numpy_and_no_gap():
    left = to_uint8(moving_square(frames=2, height=16, width=16))
    combined = side_by_side(left, torch.from_numpy(left), gap=0)
    assert combined.shape == (2, 16, 32, 3) and combined.is_floating_point()
    assert float(combined.min()) >= 0 and float(combined.max()) <= 1
    assert torch.equal(combined[:, :, :16], combined[:, :, 16:])


def test_side_by_side_rejects_mismatched_videos():
    with pytest.raises(ValueError, match="same number of frames.*5 and 4"):
        side_by_side(moving_square(frames=5), moving_square(frames=4))
    with pytest.raises(ValueError, match="same height.*64 and 32"):
        side_by_side(moving_square(frames=2), moving_square(frames=2, height=32))
    with pytest.raises(ValueError, match="gap"):
        side_by_side(moving_square(frames=2), moving_square(frames=2), gap=-1)


# --------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "frames, message",
    [
        (torch.rand(8, 8, 3), r"\[T, H, W, 3\].*frames\[None\]"),
        (torch.rand(2, 8, 8, 4), r"\[T, H, W, 3\].*alpha"),
        (torch.rand(0, 8, 8, 3), "at least one frame"),
        (np.zeros((2, 8, 8, 3), dtype=np.int64), "floats in 0..1 or uint8"),
        (torch.full((2, 8, 8, 3), float("nan")), "NaN"),
    ],
)
def test_bad_frames_are_refused_with_the_fix(tmp_path, frames, message):
    with pytest.raises(ValueError, match=message):
        write_video(frames, 8, tmp_path / "clip.mp4")
    assert only_file(tmp_path) == []


def test_frames_that_are_not_an_array_are_refused(tmp_path):
    with pytest.raises(TypeError, match="torch tensor or numpy array"):
        write_video([[[[0.0, 0.0, 0.0]]]], 8, tmp_path / "clip.mp4")
    with pytest.raises(TypeError, match="torch tensor or numpy array"):
        side_by_side([[[[0.0, 0.0, 0.0]]]], moving_square(frames=1))


@pytest.mark.parametrize("fps", [0, -8, float("nan"), float("inf"), "24", None, True])
def test_bad_fps_is_refused(tmp_path, fps):
    with pytest.raises(ValueError, match="fps must be a positive number"):
        write_video(moving_square(frames=2), fps, tmp_path / "clip.mp4")


def test_unknown_suffix_lists_the_supported_ones(tmp_path):
    with pytest.raises(ValueError, match=r"\.mp4, \.webp, \.gif"):
        write_video(moving_square(frames=2), 8, tmp_path / "clip.avi")
    with pytest.raises(ValueError, match="suffix"):
        read_video(tmp_path / "clip.avi")


def test_bad_quality_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="crf"):
        write_video(moving_square(frames=2), 8, tmp_path / "clip.mp4", crf=60)
    with pytest.raises(ValueError, match="quality"):
        write_video(moving_square(frames=2), 8, tmp_path / "clip.webp", quality=101)


def test_floats_are_clamped_and_rounded():
    frames = torch.tensor([-0.5, 0.0, 0.5, 1.0, 7.0, 0.1]).reshape(1, 1, 2, 3)
    assert to_uint8(frames).ravel().tolist() == [0, 0, 128, 255, 255, 26]


def levels(values, eight_bit, dtype=torch.float32):
    return to_uint8(torch.tensor(values, dtype=dtype).reshape(1, 1, -1, 1).expand(-1, -1, -1, 3),
                    eight_bit)[..., 0].ravel().tolist()


def test_each_rounding_as_its_original_computes_it():
    # 0.5 · 255 = 127.5: a tie; 0.1 · 255 = 25.5000004 in float32; 0.999 · 255 = 254.745
    values = [-0.5, 0.0, 0.5, 0.1, 0.999, 1.0, 7.0]
    assert levels(values, EightBit("nearest")) == [0, 0, 128, 26, 255, 255, 255]  # halves to even: 127.5 -> 128
    assert levels(values, EightBit("truncate", "float32")) == [0, 0, 127, 25, 254, 255, 255]
    assert levels(values, EightBit("half_up", "float32")) == [0, 0, 128, 26, 255, 255, 255]
    assert levels([2.5 / 255], EightBit("nearest")) == [2] and levels([2.5 / 255], EightBit("half_up", "float32")) == [3]


def test_the_float_type_of_the_arithmetic_decides_some_levels():
    # 1028/2048 is a float16: times 255 it is 127.998046875 exactly, which float16 rounds to 128
    value = 1028 / 2048
    assert levels([value], EightBit("truncate", "float32")) == [127]
    assert levels([value], EightBit("truncate", "float16")) == [128]
    assert torch.tensor(value, dtype=torch.float16).mul(255).to(torch.uint8).item() == 128  # as torch computes it
    # bfloat16 rounds 255 + 0.5 to 256: white stays 255 (as the original's clamp after it keeps it), not 0
    assert levels([1.0], EightBit("half_up", "bfloat16")) == [255]


def test_the_default_conversion_is_the_one_from_before_backends_described_theirs():
    rng = np.random.default_rng(0)
    for frames in (rng.random((2, 8, 8, 3)), rng.random((2, 8, 8, 3), dtype=np.float32),
                   torch.rand(2, 8, 8, 3).to(torch.bfloat16)):
        as_numpy = frames.float().numpy() if isinstance(frames, torch.Tensor) else frames
        assert np.array_equal(to_uint8(frames), np.rint(np.clip(as_numpy, 0.0, 1.0) * 255.0).astype(np.uint8))


def test_a_conversion_the_writer_cannot_do_is_refused():
    with pytest.raises(ValueError, match="unknown 8-bit rounding 'floor'; choose one of: nearest, half_up, truncate"):
        EightBit("floor")
    with pytest.raises(ValueError, match="unknown float type 'float8'"):
        EightBit("nearest", "float8")
    with pytest.raises(ValueError, match="the loaded backend's eight_bit"):
        to_uint8(moving_square(frames=1), EightBit("half_up", "model"))


# ------------------------------------------------------------------------------------ atomic writes


def test_an_encoder_failure_midway_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    import av

    target = tmp_path / "out" / "clip.mp4"
    write_video(moving_square(frames=3), 8, target)
    before = target.read_bytes()

    real_from_ndarray, calls = av.VideoFrame.from_ndarray, []

    # x264 holds ~40 frames for look-ahead before the first packet opens the file: fail well after that
    def fail_on_frame_55(*args, **kwargs):
        calls.append(1)
        if len(calls) == 55:
            assert [p.name for p in target.parent.iterdir() if p.name.endswith(".partial")]  # really midway
            raise RuntimeError("disk full")
        return real_from_ndarray(*args, **kwargs)

    monkeypatch.setattr(av.VideoFrame, "from_ndarray", fail_on_frame_55)
    with pytest.raises(RuntimeError, match="disk full"):
        write_video(moving_square(frames=60, height=32, width=32), 8, target)
    assert len(calls) == 55
    assert only_file(target.parent) == ["clip.mp4"] and target.read_bytes() == before


def test_a_cancel_midway_leaves_nothing_behind(tmp_path, monkeypatch):
    def write_half_then_cancel(video, fps, partial, **settings):
        partial.write_bytes(b"GIF89a half a video")
        raise KeyboardInterrupt  # what a cancel looks like: not an Exception, and it must travel on

    monkeypatch.setitem(writer._ENCODERS, ".gif", write_half_then_cancel)
    with pytest.raises(KeyboardInterrupt):
        write_video(moving_square(frames=2), 8, tmp_path / "deep" / "er" / "clip.gif")
    assert only_file(tmp_path / "deep" / "er") == []


def test_read_video_of_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_video(tmp_path / "nothing.mp4")
