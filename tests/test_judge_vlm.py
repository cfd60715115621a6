"""The VLM judge (`phyprompt.judges.vlm`) and a judge folder's spec (`phyprompt.judges.spec`), on tiny
Qwen2.5-VL folders built at test time: a random one, and a scripted one whose first answer is "4" with
known probabilities over "1".."5" (tests/support/tiny_vlm.py)."""

import json
import re

import numpy as np
import pytest
import torch

from phyprompt.infra.progress import Cancelled
from phyprompt.judges import JudgeLoadError, JudgeSpec
from phyprompt.judges.chat import question_text
from phyprompt.judges.scores import RULE_VALUES, expected_score
from phyprompt.judges.templates import pc_prompt, rule_prompt, sa_prompt
from phyprompt.judges.vlm import DEFAULT_FRAMES, VLMJudge
from phyprompt.video.writer import write_video
from support.tiny_vlm import ANSWER_LOGITS, expected_answer, write_tiny_qwen3_vl, write_tiny_vlm

CAPTION = "A ball falls and bounces on the floor."


@pytest.fixture(scope="module")
def scripted_dir(tmp_path_factory):
    return write_tiny_vlm(tmp_path_factory.mktemp("vlm") / "scripted", scripted=True)


@pytest.fixture(scope="module")
def random_dir(tmp_path_factory):
    return write_tiny_vlm(tmp_path_factory.mktemp("vlm") / "random")


@pytest.fixture(scope="module")
def scripted(scripted_dir):
    return VLMJudge.load(scripted_dir, device="cpu")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    frames = np.random.default_rng(0).random((12, 40, 56, 3), dtype=np.float32)
    return str(write_video(frames, 8, tmp_path_factory.mktemp("videos") / "clip.mp4"))


def test_the_answer_is_parsed_and_weighed_as_autoeval_does(scripted, clip):
    [result] = scripted.judge([clip], [CAPTION], rules=[["a dropped ball falls down"]])
    assert (result.sa.score, result.sa.text) == (4, "4") and (result.pc.score, result.pc.text) == (4, "4")
    assert result.sa.expected == pytest.approx(expected_answer(), abs=1e-4)
    assert result.pc.expected == pytest.approx(expected_answer(), abs=1e-4)
    assert result.joint and result.frames == 12 and result.judge == "scripted" and not result.notes
    [rule] = result.rules
    # the same parser for a rule (the reference's: "4" reads as 4); the expected value over "0".."2"
    assert rule.rule == "a dropped ball falls down" and rule.verdict == 4
    assert rule.answer.expected == pytest.approx(expected_score([-10.0, *ANSWER_LOGITS[:2]], RULE_VALUES), abs=1e-4)
    assert result.summary() == "SA 4 (4.05); PC 4 (4.05); joint yes; rules followed 0/1"


def test_it_asks_autoeval_questions_as_chat_messages_with_the_video(scripted, clip, monkeypatch):
    asked = []
    original = scripted.processor.apply_chat_template
    monkeypatch.setattr(scripted.processor, "apply_chat_template",
                        lambda messages, **kw: asked.append(messages) or original(messages, **kw))
    scripted.judge([clip], [CAPTION], rules=[["ice melts in the sun"]])
    questions = [messages[0]["content"][1]["text"] for messages in asked]
    assert questions == [question_text(sa_prompt(CAPTION)), question_text(pc_prompt()),
                         question_text(rule_prompt("ice melts in the sun"))]
    assert questions[0] == (f'Does this video match the description: "{CAPTION}"? Please rate the video on a scale '
                            "from 1 to 5, where 5 indicates a perfect match and 1 indicates no relevance.")
    assert questions[2].endswith("Choose 0 if not, 1 if valid, or 2 if indeterminate.")
    assert all(messages[0]["content"][0] == {"type": "video"} for messages in asked)


@pytest.mark.parametrize("video, frames", [
    (torch.rand(9, 30, 40, 3), 9),  # ComfyUI's IMAGE batch
    ((np.random.default_rng(1).random((5, 30, 40, 3)) * 255).astype(np.uint8), 5),
    (torch.rand(1, 30, 40, 3), 1),  # one frame: shown DEFAULT_FRAMES times, and said so
])
def test_frames_in_memory(scripted, video, frames):
    [result] = scripted.judge([video], [CAPTION])
    assert result.sa.score == 4 and result.frames == frames
    assert result.notes == ((f"the video is a single frame, shown {DEFAULT_FRAMES} times: the judge saw no motion",)
                            if frames == 1 else ())


def test_a_long_video_is_sampled_not_read_whole_into_the_model(scripted, tmp_path):
    path = write_video(np.zeros((1000, 16, 16, 3), dtype=np.uint8), 24, tmp_path / "long.mp4")
    [result] = scripted.judge([path], [CAPTION])
    assert result.frames == 1000 and result.sa.score == 4 and not result.notes


def test_batches_give_what_one_video_at_a_time_gives(random_dir, clip):
    judge = VLMJudge.load(random_dir, device="cpu", frames=4, max_new_tokens=6)
    videos = [clip, torch.rand(3, 20, 30, 3), torch.rand(6, 50, 40, 3)]
    captions = [CAPTION, "water pours into a glass", "a cat jumps"]
    calls = []
    batched = judge.judge(videos, captions, batch_size=3, progress=lambda done, total: calls.append((done, total)))
    single = judge.judge(videos, captions)
    assert calls == [(1, 3), (2, 3), (3, 3)]
    for one, other in zip(batched, single):  # left padding: a row's answer does not depend on its batch
        assert one.sa.text == other.sa.text and one.pc.text == other.pc.text
        assert one.sa.expected == pytest.approx(other.sa.expected, abs=1e-3)
        assert one.pc.expected == pytest.approx(other.pc.expected, abs=1e-3)


def test_qwen3_vl_the_architecture_of_cosmos_reason2(tmp_path, clip):
    folder = write_tiny_qwen3_vl(tmp_path / "qwen3-vl")
    assert JudgeSpec.kind_of(folder) == "vlm"
    judge = JudgeSpec.parse(folder, device="cpu", frames=4).open()
    results = judge.judge([clip, torch.rand(3, 40, 50, 3)], [CAPTION, "a cat jumps"], rules=[["ice melts"], []],
                          batch_size=2)
    assert [len(result.rules) for result in results] == [1, 0]
    assert all(1 <= result.sa.expected <= 5 and 1 <= result.pc.expected <= 5 for result in results)


def test_an_answer_without_a_number_scores_0(random_dir, clip):
    # the random model writes tokens, not ratings: the reference parser reads 0, the expected score is
    # still read at the first position
    judge = VLMJudge.load(random_dir, device="cpu", frames=2, max_new_tokens=4)
    [result] = judge.judge([clip], [CAPTION])
    assert result.sa.text and not any(c.isdigit() for c in result.sa.text)
    assert result.sa.score == 0 and 1 <= result.sa.expected <= 5 and not result.joint


def test_cancel_stops_before_the_next_batch(scripted, clip, monkeypatch):
    generated = []
    original = scripted.model.generate
    monkeypatch.setattr(scripted.model, "generate", lambda **kw: generated.append(1) or original(**kw))

    def cancel(done, total):
        raise Cancelled

    with pytest.raises(Cancelled):
        scripted.judge([clip, clip, clip], [CAPTION] * 3, progress=cancel)
    assert len(generated) == 1


def test_captions_empty_and_very_long(scripted, clip):
    with pytest.raises(ValueError, match="the caption is empty: say what the video should show"):
        scripted.judge([clip], ["  "])
    # 10,000 characters that fit the model's context are judged as they are
    long = (CAPTION + " ") * (10_000 // (len(CAPTION) + 1))
    [result] = scripted.judge([clip], [long])
    assert result.caption == long and result.sa.score == 4
    # ones that do not (this tokenizer spends a token or more on each unfamiliar character) are refused,
    # never cut short silently
    unfamiliar = "".join(np.random.default_rng(2).choice(list("qxzjkvwyQXZJKVWY#@%&"), 10_000))
    with pytest.raises(ValueError, match=r"tokens, and scripted reads at most 4096 with its answer: shorten the "
                                         r"caption or rules, or judge fewer frames"):
        scripted.judge([clip], [unfamiliar])


def test_release_frees_the_weights_and_the_next_call_loads_them(scripted_dir, clip):
    judge = VLMJudge.load(scripted_dir, device="cpu")
    assert judge.in_process and judge.modules() == {"judge": judge.model}
    judge.release()
    assert not judge.loaded
    assert judge.judge([clip], [CAPTION])[0].sa.score == 4
    assert isinstance(judge.modules()["judge"], torch.nn.Module)


# --- opening a folder: which judge it is, or why it is none ---------------------------------------------

def test_a_judge_spec_recognises_a_video_language_model(scripted_dir):
    assert JudgeSpec.kind_of(scripted_dir) == "vlm"
    judge = JudgeSpec.parse(scripted_dir, device="cpu", frames=4).open()
    assert isinstance(judge, VLMJudge) and judge.frames == 4


def test_the_autoeval_folder_is_the_videophy2_judge(tmp_path):
    for config in ({"model_type": "mplug-owl"}, {"architectures": ["MplugOwlForConditionalGeneration"]}):
        (tmp_path / "config.json").write_text(json.dumps(config))
        assert JudgeSpec.kind_of(str(tmp_path)) == "videophy2"
    with pytest.raises(JudgeLoadError, match="always looks at the 32 frames it was trained on"):
        JudgeSpec.parse(str(tmp_path), frames=8).open()
    with pytest.raises(JudgeLoadError, match=r"is VideoPhy-2's AutoEval \(mPLUG-Owl\), which transformers cannot "
                                             "load: open it as the videophy2 judge"):
        VLMJudge.load(str(tmp_path))


def test_a_folder_of_another_model_is_one_clear_error(tiny_refiner_dir, tmp_path):
    message = (f"{tiny_refiner_dir} holds a model with model_type 'qwen2' (Qwen2ForCausalLM), which is not a "
               "judge this version knows: give VideoPhy-2's AutoEval folder")
    with pytest.raises(JudgeLoadError, match=re.escape(message)):
        JudgeSpec.parse(tiny_refiner_dir).open()
    with pytest.raises(JudgeLoadError, match=re.escape(message)):
        VLMJudge.load(tiny_refiner_dir)
    with pytest.raises(JudgeLoadError, match="has no config.json, so it is not a Hugging Face model folder"):
        JudgeSpec.parse(str(tmp_path)).open()
    with pytest.raises(JudgeLoadError, match=r"judge folder not found: videophysics/videophy_2_auto; it is not "
                                             "downloaded for you: hf download videophysics/videophy_2_auto"):
        JudgeSpec.parse("videophysics/videophy_2_auto").open()
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    with pytest.raises(JudgeLoadError, match="model.gguf is a file: give VideoPhy-2's AutoEval folder"):
        JudgeSpec.parse(str(tmp_path / "model.gguf")).open()


def test_a_model_name_is_only_for_a_server(scripted_dir):
    with pytest.raises(JudgeLoadError, match="the model name is for a judge on a server"):
        JudgeSpec.parse(scripted_dir, model="qwen2.5vl:7b").open()
