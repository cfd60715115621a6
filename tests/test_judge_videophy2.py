"""The VideoPhy-2 AutoEval port on a tiny random checkpoint in the released layout: frames, pixels, prompt ids,
the score parser, strict loading, and the judge's batching, sharing, cancelling and bad inputs. Parity with
the original mPLUG-Owl-Video code is checked outside the suite (it needs transformers 4.28)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch

from phyprompt.infra.checkpoints import CheckpointError, CheckpointMismatchError, ModelFolderError
from phyprompt.infra.progress import Cancelled
from phyprompt.judges import judge_class
from phyprompt.judges.frames import CLIP_MEAN, CLIP_STD, autoeval_frames, autoeval_pixels, sample_frames, sample_indices
from phyprompt.judges.scores import RULE_VALUES, expected_score, parse_score
from phyprompt.judges.templates import (PC_TEMPLATE, RULE_TEMPLATE, SA_TEMPLATE, VIDEO_PLACEHOLDER, pc_prompt,
                                        rule_prompt, sa_prompt, split_template)
from phyprompt.video.writer import read_video, scale_frames, write_video

ANSWER_STEPS = 4  # random weights rarely say </s>: a few tokens per answer keep the tests fast


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> str:
    from support.tiny_autoeval import write_tiny_autoeval

    return write_tiny_autoeval(tmp_path_factory.mktemp("autoeval") / "videophy_2_auto")


@pytest.fixture(scope="module")
def judge(tiny_folder):
    return judge_class("videophy2").load(tiny_folder, device="cpu", dtype="fp32", max_length=ANSWER_STEPS)


# A 2-frame 320×192 H.264 yuv420p clip of saturated 16 px colour blocks (phyprompt's writer: BT.709, crf 19)
# and the SHA-256 of the frames decord 0.6.0 (FFmpeg 4.1.6), the reference's reader, returns for it:
# `VideoReader(path, width=224, height=224).get_batch([0, 1]).asnumpy()`, uint8 [2, 224, 224, 3].
# benchmarks/judge_decode.py compares more sizes and patterns with decord itself.
DECORD_CLIP = os.path.join(os.path.dirname(__file__), "data", "videophy2", "colour_blocks_320x192.mp4")
DECORD_SHA256 = "42a1499439900057d04046a969a97b6f54c84729992c0d712a52b8370f63ef2e"


def copy_folder(src: str, tmp_path) -> str:
    dst = str(tmp_path / "copy")
    shutil.copytree(src, dst)
    return dst


def clip(frames: int, height: int = 40, width: int = 56, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)


def colour_edges(frames: int, height: int, width: int) -> np.ndarray:
    """Saturated red, green and blue stripes 7 px wide, moving 3 px a frame: sharp colour edges everywhere."""
    colours = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255)], dtype=np.uint8)
    x = np.arange(width)
    return np.stack([np.broadcast_to(colours[((x + 3 * t) // 7) % 3], (height, width, 3)) for t in range(frames)])


def ffmpeg_scaled(args: list[str], data: bytes = b"") -> np.ndarray:
    """RGB frames at 224×224 from the ffmpeg program (imageio-ffmpeg's build, not PyAV's libraries) given the
    filter decord builds, `scale=224:224:flags=bilinear` to rgb24."""
    import imageio_ffmpeg  # a test dependency (tests/requirements.txt): fail, don't skip, without it

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", *args, "-vf", "scale=224:224:flags=bilinear",
               "-pix_fmt", "rgb24", "-f", "rawvideo", "-"]
    output = subprocess.run(command, input=data, check=True, capture_output=True).stdout
    return np.frombuffer(output, dtype=np.uint8).reshape(-1, 224, 224, 3)


# ------------------------------------------------------------------------------------------- frames


@pytest.mark.parametrize("frames, expected", [
    (1, [0] * 32),
    (2, [0] * 17 + [1] * 15),  # 16/32 = 0.5 rounds half to even, down to 0
    (33, list(range(32))),
    (300, [4, 13, 23, 32, 41, 51, 60, 69, 79, 88, 97, 107, 116, 125, 135, 144, 154, 163, 172, 182, 191, 200, 210,
           219, 228, 238, 247, 256, 266, 275, 284, 294]),
])
def test_frame_indices_by_hand(frames, expected):
    assert sample_indices(frames) == expected


def test_frame_indices_1_to_300():
    for frames in range(1, 301):
        segment = (frames - 1) / 32
        expected = [int(segment / 2) + round(segment * i) for i in range(32)]  # Python's round is half-to-even
        indices = sample_indices(frames)
        assert indices == expected
        assert indices == sorted(indices) and 0 <= indices[0] and indices[-1] < frames
    with pytest.raises(ValueError, match="no frames"):
        sample_indices(0)


def test_sample_frames_from_float_uint8_and_file(tmp_path):
    video = clip(50)
    frames, total = sample_frames(video)
    assert total == 50 and frames.dtype == np.uint8 and frames.shape == (32, 40, 56, 3)
    assert np.array_equal(frames, video[sample_indices(50)])
    as_float = torch.from_numpy(video).float() / 255
    assert np.array_equal(sample_frames(as_float)[0], frames)

    from phyprompt.video.writer import write_video

    path = write_video(as_float[:12], 8, tmp_path / "clip.webp", lossless=True)
    from_file, total = sample_frames(str(path))
    assert total == 12 and from_file.shape == (32, 40, 56, 3)
    with pytest.raises(ValueError, match=r"\[T, H, W, 3\]"):
        sample_frames(np.zeros((4, 8, 8), dtype=np.uint8))


def test_a_file_is_decoded_as_decord_decodes_it():
    decoded = read_video(DECORD_CLIP, size=(224, 224))[0]
    assert decoded.shape == (2, 224, 224, 3)
    assert hashlib.sha256(decoded.tobytes()).hexdigest() == DECORD_SHA256
    frames, total = autoeval_frames(DECORD_CLIP)
    assert total == 2 and np.array_equal(frames, decoded[sample_indices(2)])
    # Converting to RGB at full size first (what the judge did) loses what scaling the YUV planes keeps.
    rgb_first = scale_frames(read_video(DECORD_CLIP)[0], (224, 224))
    assert np.abs(rgb_first.astype(int) - decoded).max() > 100


@pytest.mark.parametrize("width, height", [(512, 320), (720, 480), (96, 160), (333, 197), (224, 224)])
def test_file_frames_are_ffmpegs_scale_filter_on_the_yuv_planes(tmp_path, width, height):
    # shrunk, enlarged, odd (the writer pads it to even) and the judge's own size, which is only converted
    path = write_video(colour_edges(3, height, width), 8, tmp_path / "edges.mp4")
    frames = read_video(path, size=(224, 224))[0]
    assert np.array_equal(frames, ffmpeg_scaled(["-i", str(path)]))
    if (width, height) != (224, 224):
        assert np.abs(scale_frames(read_video(path)[0], (224, 224)).astype(int) - frames).max() > 50


def test_file_frames_keep_the_frame_count_and_the_sampled_moments(tmp_path):
    levels = np.linspace(0, 255, 50).astype(np.uint8)  # every frame one flat grey, 5 levels from the next
    path = write_video(np.broadcast_to(levels[:, None, None, None], (50, 64, 96, 3)), 8, tmp_path / "greys.mp4")
    frames, total = autoeval_frames(str(path))
    assert total == 50 == len(read_video(path)[0]) and frames.shape == (32, 224, 224, 3)
    nearest = np.abs(frames.mean(axis=(1, 2, 3))[:, None] - levels[None, :]).argmin(axis=1)
    assert nearest.tolist() == sample_indices(50)  # each sampled frame is the one its index names


def test_frames_in_memory_are_squashed_by_the_same_filter_on_rgb(tmp_path):
    video = clip(12)
    frames, total = autoeval_frames(video)
    assert total == 12 and np.array_equal(frames, video[sample_indices(12)])
    raw = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "56x40", "-i", "-"]
    expected = autoeval_pixels(ffmpeg_scaled(raw, np.ascontiguousarray(frames).tobytes()))
    assert torch.equal(autoeval_pixels(frames), expected)
    # an RGB file (lossless WebP) gives what its frames in memory give
    path = write_video(video, 8, tmp_path / "clip.webp", lossless=True)
    assert torch.equal(autoeval_pixels(autoeval_frames(str(path))[0]), expected)
    with pytest.raises(ValueError, match="width, height"):
        read_video(path, size=(224, 0))


def test_pixels_at_224_are_clip_normalised_exactly():
    frames = clip(32, 224, 224)
    pixels = autoeval_pixels(frames)
    assert pixels.shape == (3, 32, 224, 224) and pixels.dtype == torch.float32
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1, 1)
    expected = (torch.from_numpy(frames).permute(3, 0, 1, 2).double() / 255 - mean) / std
    assert torch.allclose(pixels.double(), expected, atol=1e-6)


def test_pixels_are_squashed_not_cropped():
    # Left half black, right half white, in a wide frame: squashing keeps both halves, a crop would not.
    frames = np.zeros((32, 60, 200, 3), dtype=np.uint8)
    frames[:, :, 100:] = 255
    pixels = autoeval_pixels(frames)
    level = pixels[0, 0] * CLIP_STD[0] + CLIP_MEAN[0]
    assert torch.allclose(level[:, :100], torch.zeros(224, 100), atol=1e-6)
    assert torch.allclose(level[:, 124:], torch.ones(224, 100), atol=1e-6)
    assert torch.stack([pixels, pixels]).shape == (2, 3, 32, 224, 224)


# ----------------------------------------------------------------------------------- templates, scores


def test_templates_and_split():
    assert SA_TEMPLATE.count(VIDEO_PLACEHOLDER) == PC_TEMPLATE.count(VIDEO_PLACEHOLDER) == 1
    assert sa_prompt("a cat {jumps}").count('"a cat {jumps}"') == 1
    assert rule_prompt("x") == RULE_TEMPLATE.replace("{rule}", "x")
    assert rule_prompt("x").endswith("Choose 0 if not, 1 if valid, or 2 if indeterminate. \nAI: ")
    before, question = split_template(pc_prompt())
    assert before.endswith("Human: ") and question.startswith("\nHuman: Does this video adhere to the physical laws?")
    with pytest.raises(ValueError, match="exactly one"):
        split_template("no video here")


# The reference tries "zero".."five" then "0".."5" in that order: "10" is 0, "none" is 1, "3/5" is 3.
@pytest.mark.parametrize("answer, score", [
    ("5", 5), ("Five", 5), ("none", 1), ("3/5", 3), ("I'd rate it 4", 4), ("", 0), ("no number", 0),
    ("FOUR.", 4), ("zero", 0), ("5 out of 5", 5), ("one of the best: 5", 1), ("score: 2", 2), ("7", 0),
    ("10", 0), ("rated 9", 0), ("٣", 3), ("²", 0), ("  3  ", 3), ("someone", 1), ("It is 4, maybe 3", 3),
])
def test_parse_score_like_the_reference(answer, score):
    assert parse_score(answer) == score


def test_expected_score():
    assert expected_score([0.0] * 5) == pytest.approx(3.0)
    assert expected_score([-1e9, -1e9, -1e9, -1e9, 0.0]) == pytest.approx(5.0)
    assert expected_score(torch.tensor([0.0, float("-inf"), 0.0]), RULE_VALUES) == pytest.approx(1.0)
    # Log-probabilities renormalise over the answer tokens.
    assert expected_score(np.log([0.1, 0.1, 0.0001, 0.0001, 0.0002])) == pytest.approx(
        (0.1 + 0.2 + 0.0003 + 0.0004 + 0.001) / 0.2004)
    with pytest.raises(ValueError):
        expected_score([0.0, 0.0])


# ------------------------------------------------------------------------------------------- prompt ids


def test_prompt_ids_layout(judge):
    tok = judge.tokenizer
    prompt = tok.prompt(sa_prompt("a ball falls"), 65)
    before, after = split_template(sa_prompt("a ball falls"))
    assert prompt.before == [tok.bos_id] + tok._sp.encode(before)
    assert prompt.after == tok._sp.encode(after)  # alone, so it starts with sentencepiece's "▁"
    assert tok._sp.id_to_piece(prompt.after[0]).startswith("▁")
    layout = prompt.layout()
    assert layout == prompt.before + [-2] * 65 + prompt.after and len(prompt) == len(layout)
    # transformers 4.28 split the text at literal special tokens, keeping the spaces around them
    assert tok.encode("a </s> b<unk>") == tok._sp.encode("a ") + [tok.eos_id] + tok._sp.encode(" b") + [tok.unk_id]


# ----------------------------------------------------------------------------------------------- loading


def test_loads_release_layout_ignoring_only_inv_freq(judge, tiny_folder):
    index = json.load(open(os.path.join(tiny_folder, "pytorch_model.bin.index.json")))
    assert len(set(index["weight_map"].values())) == 2
    assert any(k.endswith("rotary_emb.inv_freq") for k in index["weight_map"])
    model = judge.modules()["judge"]
    assert isinstance(model, torch.nn.Module) and model.dtype == torch.float32
    assert model.language_model.model.rotary_emb.inv_freq.dtype == torch.float32


def test_bf16_default_keeps_rotary_in_fp32(tiny_folder):
    judge = judge_class("videophy2").load(tiny_folder, device="cpu", max_length=ANSWER_STEPS)
    model = judge.modules()["judge"]
    assert model.dtype == torch.bfloat16
    assert model.language_model.model.rotary_emb.inv_freq.dtype == torch.float32
    [result] = judge.judge([clip(3)], ["a ball falls"])
    assert 0 <= result.sa.score <= 5 and 1 <= result.sa.expected <= 5


def _rewrite_shard(folder: str, change) -> None:
    index = json.load(open(os.path.join(folder, "pytorch_model.bin.index.json")))
    shard = os.path.join(folder, sorted(set(index["weight_map"].values()))[1])
    state = torch.load(shard, weights_only=True)
    change(state)
    torch.save(state, shard)


def test_extra_key_is_an_error(tiny_folder, tmp_path):
    folder = copy_folder(tiny_folder, tmp_path)
    _rewrite_shard(folder, lambda s: s.update({"language_model.model.extra.weight": torch.zeros(2)}))
    with pytest.raises(CheckpointMismatchError, match=r"1 unexpected key \(language_model.model.extra.weight\)"):
        judge_class("videophy2").load(folder, device="cpu")


def test_missing_key_is_an_error(tiny_folder, tmp_path):
    folder = copy_folder(tiny_folder, tmp_path)
    _rewrite_shard(folder, lambda s: s.pop("language_model.lm_head.weight"))
    with pytest.raises(CheckpointMismatchError, match=r"1 missing key \(language_model.lm_head.weight\)"):
        judge_class("videophy2").load(folder, device="cpu")


@pytest.mark.parametrize("damage", ["truncate", "garble"])
def test_damaged_shard_is_a_clear_error(tiny_folder, tmp_path, damage):
    folder = copy_folder(tiny_folder, tmp_path)
    shard = os.path.join(folder, "pytorch_model-00002-of-00002.bin")
    data = open(shard, "rb").read()
    with open(shard, "wb") as f:
        f.write(data[: len(data) // 2] if damage == "truncate" else b"\x80\x02garbage" + data[100:])
    with pytest.raises(CheckpointError, match="pytorch_model-00002-of-00002.bin is truncated or damaged"):
        judge_class("videophy2").load(folder, device="cpu")


def test_other_folders_are_clear_errors(tiny_folder, tmp_path):
    folder = copy_folder(tiny_folder, tmp_path)
    config = json.load(open(os.path.join(folder, "config.json")))
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config["text_config"], f)  # a plain LLaMA folder
    with pytest.raises(ModelFolderError, match="describes 'llama', not VideoPhy-2's AutoEval"):
        judge_class("videophy2").load(folder, device="cpu")
    with pytest.raises(ModelFolderError, match="not found"):
        judge_class("videophy2").load(str(tmp_path / "nowhere"), device="cpu")
    folder = copy_folder(tiny_folder, tmp_path / "b")
    os.remove(os.path.join(folder, "tokenizer.model"))
    with pytest.raises(ModelFolderError, match="no tokenizer.model"):
        judge_class("videophy2").load(folder, device="cpu")


# ------------------------------------------------------------------------------------------------- judge


def test_batched_equals_unbatched_and_shared_equals_per_prompt(judge):
    videos = [clip(40, seed=1), clip(7, 30, 30, seed=2), clip(90, seed=3)]
    captions = ["a red ball falls and bounces", "a cat", "water pours from a glass into a wide bowl on a table"]
    rules = [["gravity pulls the ball down"], [], ["water flows downward", "the bowl does not move"]]
    one_by_one = judge.judge(videos, captions, rules=rules, batch_size=1)
    batched = judge.judge(videos, captions, rules=rules, batch_size=3)
    judge.share_video_encoding = False
    try:
        per_prompt = judge.judge(videos, captions, rules=rules, batch_size=2)
    finally:
        judge.share_video_encoding = True
    for a, b, c in zip(one_by_one, batched, per_prompt):
        answers = [(x.sa, x.pc, *(r.answer for r in x.rules)) for x in (a, b, c)]
        for ours, other in ((answers[0], answers[1]), (answers[0], answers[2])):
            assert [x.text for x in ours] == [x.text for x in other]
            assert [x.score for x in ours] == [x.score for x in other]
            assert [x.expected for x in ours] == pytest.approx([x.expected for x in other], abs=1e-4)
    assert [len(j.rules) for j in batched] == [1, 0, 2] and batched[2].rules[1].rule == "the bowl does not move"
    assert [j.frames for j in batched] == [40, 7, 90] and batched[0].judge == "videophy2"


def test_progress_after_each_video_and_cancel_between_batches(judge):
    calls = []

    def progress(done, total):
        calls.append((done, total))
        if done == 2:
            raise Cancelled()

    videos = [clip(4, seed=i) for i in range(5)]
    with pytest.raises(Cancelled):
        judge.judge(videos, ["a ball"] * 5, batch_size=2, progress=progress)
    assert calls == [(1, 5), (2, 5)]  # the first batch finished; the next never started


def test_a_file_is_judged_on_decords_pixels(judge):
    decoded = read_video(DECORD_CLIP, size=(224, 224))[0]
    assert judge.judge([DECORD_CLIP], ["a ball"]) == judge.judge([decoded], ["a ball"])


def test_one_and_a_thousand_frames(judge):
    one, many = judge.judge([clip(1), clip(1000, 16, 16)], ["a ball", "a ball"], batch_size=2)
    assert (one.frames, many.frames) == (1, 1000)


def test_captions_empty_rejected_and_huge_cut_to_fit(judge):
    with pytest.raises(ValueError, match="empty"):
        judge.judge([clip(3)], ["  "])
    caption = "a ball rolls down a long ramp and " * 300  # ~10,000 characters
    [result] = judge.judge([clip(3)], [caption], rules=[[caption[:5000]]])
    assert result.caption == caption
    assert any(n.startswith("caption cut to") and "2048-token context" in n for n in result.notes)
    assert any(n.startswith("rule cut to") for n in result.notes)


def test_release_then_judge_again(tiny_folder):
    judge = judge_class("videophy2").load(tiny_folder, device="cpu", dtype="fp32", max_length=ANSWER_STEPS)
    before = judge.judge([clip(5)], ["a ball"])
    judge.release()
    assert not judge.loaded
    assert judge.judge([clip(5)], ["a ball"]) == before
