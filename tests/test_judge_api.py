"""The API judge (`phyprompt.judges.api`) against a real HTTP server on 127.0.0.1 with scripted replies
(tests/support/chat_server.py): what it sends, how it reads answers and log-probabilities, and how a
server that fails is reported (never with a made-up score)."""

import base64
import io
import math

import numpy as np
import pytest
from PIL import Image

from phyprompt.infra.endpoint import ChatClient, EndpointError, ServerSpec
from phyprompt.infra.progress import Cancelled
from phyprompt.judges import JudgeSpec
from phyprompt.judges.api import DEFAULT_FRAMES, MAX_SIDE, TOP_LOGPROBS, APIJudge
from phyprompt.judges.chat import question_text
from phyprompt.judges.scores import RULE_VALUES, SCALE_VALUES, expected_score
from phyprompt.judges.templates import pc_prompt, rule_prompt, sa_prompt
from phyprompt.video.writer import write_video
from support.chat_server import ChatServer, answer, slow, status

CAPTION = "A ball falls and bounces on the floor."
MODEL = "qwen2.5vl:7b"
VIDEO = np.random.default_rng(0).random((20, 48, 64, 3), dtype=np.float32)


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(ChatClient, "backoff", 0.0)


@pytest.fixture
def server():
    servers = []

    def start(*script, **options):
        servers.append(ChatServer(*script, **options))
        return servers[-1]

    yield start
    for running in servers:
        running.close()


def judge_on(server, frames=DEFAULT_FRAMES, logprobs=True, **settings) -> APIJudge:
    return APIJudge.load(ServerSpec(server.url, MODEL, **settings), frames=frames, logprobs=logprobs)


def images_of(body) -> list[Image.Image]:
    parts = body["messages"][0]["content"][:-1]
    assert all(part["type"] == "image_url" for part in parts)
    prefix = "data:image/jpeg;base64,"
    assert all(part["image_url"]["url"].startswith(prefix) for part in parts)
    return [Image.open(io.BytesIO(base64.b64decode(part["image_url"]["url"][len(prefix):]))) for part in parts]


def test_it_sends_frames_and_autoeval_questions_and_reads_the_log_probabilities(server):
    tops = {"4": -0.2, "5": -1.9, "3": -2.6, "The": -4.0}
    chat = server(default=answer("4", [tops]))
    [result] = judge_on(chat).judge([VIDEO], [CAPTION], rules=[["a dropped ball falls down"]])
    expected = expected_score([-math.inf, -math.inf, -2.6, -0.2, -1.9], SCALE_VALUES)
    assert (result.sa.score, result.sa.text, result.sa.expected) == (4, "4", pytest.approx(expected))
    assert (result.pc.score, result.pc.expected) == (4, pytest.approx(expected))
    assert result.joint and result.frames == 20 and result.judge == MODEL
    # the rule's answer tokens are "0".."2": none is among the top tokens, so there is no expected score
    assert result.rules[0].verdict == 4 and result.rules[0].answer.expected is None
    bodies = chat.bodies()
    # (sent together: they arrive in any order)
    assert sorted(body["messages"][0]["content"][-1]["text"] for body in bodies) == sorted([
        question_text(sa_prompt(CAPTION)), question_text(pc_prompt()),
        question_text(rule_prompt("a dropped ball falls down"))])
    for body in bodies:
        assert body["model"] == MODEL and body["temperature"] == 0.0 and body["stream"] is False
        assert body["logprobs"] is True and body["top_logprobs"] == TOP_LOGPROBS
        assert len(body["messages"]) == 1 and body["messages"][0]["role"] == "user"
        frames = images_of(body)
        assert len(frames) == DEFAULT_FRAMES and all(frame.size == (64, 48) for frame in frames)


def test_the_answer_position_is_the_first_digit_and_spaced_digits_count(server):
    # "I'd rate it 4": the expected score is read where the digit was written; " 4" and "4" are one answer
    positions = [{"I": -0.1, "4": -3.0}, {"'d": -0.1}, {" rate": -0.1}, {" it": -0.1},
                 {" 4": -0.5, "4": -1.5, " 5": -1.2, " 2": -3.0}]
    chat = server(default=answer("I'd rate it 4", positions))
    [result] = judge_on(chat).judge([VIDEO], [CAPTION])
    four = np.logaddexp(-0.5, -1.5)
    assert result.sa.score == 4
    assert result.sa.expected == pytest.approx(expected_score([-math.inf, -3.0, -math.inf, four, -1.2]))


def test_rule_verdicts_and_their_expected_value(server):
    chat = server(default=answer("1", [{"1": -0.1, "0": -2.5, "2": -3.5}]))
    [result] = judge_on(chat).judge([VIDEO], [CAPTION], rules=[["gravity pulls down", "ice floats"]])
    assert [rule.verdict for rule in result.rules] == [1, 1]
    assert result.rules[0].answer.expected == pytest.approx(expected_score([-2.5, -0.1, -3.5], RULE_VALUES))
    assert result.summary() == "SA 1 (1.03); PC 1 (1.03); joint no; rules followed 2/2"


def test_a_server_without_log_probabilities_gives_no_expected_score(server):
    chat = server(default=answer("5"))
    [result] = judge_on(chat, logprobs=False).judge([VIDEO], [CAPTION])
    assert (result.sa.score, result.sa.expected) == (5, None) and result.summary() == "SA 5; PC 5; joint yes"
    assert not {"logprobs", "top_logprobs"} & set(chat.bodies()[0])


def test_an_answer_with_no_number_scores_0(server):
    chat = server(default=answer("The video shows a ball.", [{"The": -0.1}, {" video": -0.1}]))
    [result] = judge_on(chat).judge([VIDEO], [CAPTION])
    assert (result.sa.score, result.sa.expected, result.sa.text) == (0, None, "The video shows a ball.")
    assert not result.joint


@pytest.mark.parametrize("video, frames", [(VIDEO[:1], 1), (np.zeros((1000, 16, 16, 3), dtype=np.uint8), 1000)])
def test_one_frame_and_a_thousand_frames(server, video, frames):
    chat = server()
    [result] = judge_on(chat, frames=3).judge([video], [CAPTION])
    assert result.frames == frames and bool(result.notes) == (frames == 1)
    assert all(len(images_of(body)) == 3 for body in chat.bodies())


def test_frames_are_video_files_too_and_large_frames_are_scaled_down(server, tmp_path):
    path = write_video(np.zeros((4, 900, 1600, 3), dtype=np.uint8), 8, tmp_path / "wide.mp4")
    chat = server()
    [result] = judge_on(chat, frames=2).judge([path], [CAPTION])
    assert result.frames == 4
    assert {frame.size for frame in images_of(chat.bodies()[0])} == {(MAX_SIDE, MAX_SIDE * 9 // 16)}


def test_captions_empty_and_very_long(server):
    chat = server()
    with pytest.raises(ValueError, match="the caption is empty"):
        judge_on(chat).judge([VIDEO], [""])
    assert chat.bodies() == []
    long = "a ball bounces " * 667  # 10,005 characters: the server decides what it reads
    [result] = judge_on(chat).judge([VIDEO], [long])
    # the SA question carries the caption (the questions arrive in any order: they are sent together)
    questions = [body["messages"][0]["content"][-1]["text"] for body in chat.bodies()]
    assert result.caption == long and sum(long.strip() in question for question in questions) == 1


def test_a_server_that_times_out_is_an_error_not_a_score(server):
    chat = server(default=slow(5, answer("5")))
    with pytest.raises(EndpointError, match=r"gave up on .* after 2 tries: no answer within 0.2 s"):
        judge_on(chat, timeout=0.2, retries=1).judge([VIDEO], [CAPTION])


def test_server_errors_are_retried_then_answered(server):
    chat = server(status(500), status(503), default=answer("4"))
    [result] = judge_on(chat, retries=2, max_concurrency=1).judge([VIDEO], [CAPTION])
    assert result.sa.score == result.pc.score == 4
    assert len(chat.bodies()) == 4  # two failures, then the two questions


def test_a_server_that_keeps_failing_is_an_error(server):
    chat = server(default=status(500, {"error": {"message": "CUDA out of memory"}}))
    with pytest.raises(EndpointError, match=r"after 3 tries: HTTP 500 \(CUDA out of memory\)"):
        judge_on(chat, retries=2).judge([VIDEO], [CAPTION])


@pytest.mark.parametrize("reply, message", [
    (status(200, b"<html>not json</html>"), "sent a reply that is not JSON"),
    (status(200, {"result": "4"}), "sent no choices"),
    (status(400, {"error": {"message": "image input is not supported"}}),
     r"rejected the request \(HTTP 400: image input is not supported\)"),
])
def test_garbage_from_the_server_is_an_error(server, reply, message):
    with pytest.raises(EndpointError, match=message):
        judge_on(server(default=reply)).judge([VIDEO], [CAPTION])


def test_the_key_comes_from_the_named_environment_variable(server, monkeypatch):
    monkeypatch.setenv("VLM_KEY", "sk-secret")
    chat = server()
    judge_on(chat, api_key_env="VLM_KEY").judge([VIDEO], [CAPTION])
    assert chat.requests[0][1]["Authorization"] == "Bearer sk-secret"
    with pytest.raises(EndpointError, match="must be the NAME of an environment variable"):
        ServerSpec(chat.url, MODEL, api_key_env="sk-secret-key-pasted")


def test_batches_progress_and_cancel(server):
    chat = server(default=answer("3"))
    calls = []
    results = judge_on(chat).judge([VIDEO] * 3, [CAPTION, "water pours", "a cat jumps"], batch_size=2,
                                   progress=lambda done, total: calls.append((done, total)))
    assert [result.caption for result in results] == [CAPTION, "water pours", "a cat jumps"]
    assert (1, 3) in calls and (2, 3) in calls and calls[-1] == (3, 3)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)  # never backwards

    asked = len(chat.bodies())

    def cancel(done, total):
        if done:
            raise Cancelled

    with pytest.raises(Cancelled):
        judge_on(chat).judge([VIDEO] * 3, [CAPTION] * 3, progress=cancel)
    assert len(chat.bodies()) - asked == 2  # the first video's two questions, then nothing more


def test_a_judge_spec_takes_a_server_address(server):
    chat = server()
    spec = JudgeSpec.parse(chat.url, model=MODEL, frames=4, timeout=3, dtype="bf16", device="cuda")
    assert spec.kind == "api" and spec.options == {"frames": 4}  # where the server runs it is its business
    judge = spec.open()
    assert isinstance(judge, APIJudge) and judge.frames == 4 and judge.client.timeout == 3
    assert not judge.in_process
    with pytest.raises(EndpointError, match="model is empty: give the model name the server knows"):
        JudgeSpec.parse(chat.url)
