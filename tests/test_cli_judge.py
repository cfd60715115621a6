"""`python -m phyprompt judge` end to end, on a tiny scripted Qwen2.5-VL folder and on a scripted chat server,
with videos written at test time. Most runs call `cli.main` in this process (the same code without the
seconds a new process spends importing torch); two run as processes, for what a shell sees."""

import json
import subprocess
import sys

import numpy as np
import pytest
from test_cli import _REPORT_IMPORTS

from conftest import REPO
from phyprompt import cli
from phyprompt.infra.endpoint import ChatClient
from phyprompt.infra.progress import TqdmProgress
from support.chat_server import ChatServer, answer, slow, status
from support.tiny_vlm import expected_answer, write_tiny_vlm

CAPTION = "A ball falls and bounces on the floor."
LINE = "SA 4 (4.05); PC 4 (4.05); joint yes"


@pytest.fixture(scope="module")
def vlm_dir(tmp_path_factory):
    return write_tiny_vlm(tmp_path_factory.mktemp("vlm") / "scripted", scripted=True)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from phyprompt.video.writer import write_video

    folder = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    return [str(write_video(rng.random((frames, 32, 48, 3), dtype=np.float32), 8, folder / f"clip{frames}{suffix}"))
            for frames, suffix in ((9, ".mp4"), (1, ".gif"))]


@pytest.fixture
def chat():
    server = ChatServer(default=answer("4", [{"4": -0.1, "5": -2.5}]))
    yield server
    server.close()


def judge(capsys, *args) -> tuple[int, str, str]:
    status_code = cli.main(["judge", *map(str, args)])
    captured = capsys.readouterr()
    return status_code, captured.out, captured.err


def test_scores_each_video_on_its_own_line(vlm_dir, videos, capsys):
    code, out, err = judge(capsys, *videos, "--caption", CAPTION, "--judge", vlm_dir, "--device", "cpu")
    assert code == 0, err
    assert out.splitlines() == [f"{videos[0]}: {LINE}",
                                f"{videos[1]}: {LINE}; the video is a single frame, shown 16 times: the judge saw "
                                "no motion"]
    assert "judging" in err  # the progress bar, on stderr


def test_json_with_a_captions_file_and_rules(vlm_dir, videos, tmp_path, capsys):
    (tmp_path / "captions.txt").write_text(f"{CAPTION}\nwater pours into a glass\n", encoding="utf-8")
    (tmp_path / "rules.txt").write_text("# one rule per line\ngravity pulls the ball down\nthe ball keeps its shape\n")
    code, out, err = judge(capsys, *videos, "--captions", tmp_path / "captions.txt", "--rules", tmp_path / "rules.txt",
                           "--judge", vlm_dir, "--device", "cpu", "--frames", "4", "--batch-size", "2", "--json",
                           "--quiet")
    assert code == 0 and err == ""
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(row["video"], row["caption"]) for row in rows] == [(videos[0], CAPTION),
                                                                (videos[1], "water pours into a glass")]
    for row in rows:
        assert row["sa"]["score"] == row["pc"]["score"] == 4 and row["joint"] is True
        assert row["sa"]["expected"] == pytest.approx(expected_answer(), abs=1e-4)
        assert [rule["rule"] for rule in row["rules"]] == ["gravity pulls the ball down", "the ball keeps its shape"]
    assert rows[0]["frames"] == 9 and rows[1]["frames"] == 1


def test_a_judge_on_a_server(chat, videos, monkeypatch, capsys):
    monkeypatch.setenv("JUDGE_KEY", "sk-test")
    code, out, err = judge(capsys, videos[0], "--caption", CAPTION, "--judge", chat.url, "--model", "qwen2.5vl:7b",
                           "--api-key-env", "JUDGE_KEY", "--frames", "2", "--quiet")
    assert code == 0, err
    assert out.strip() == f"{videos[0]}: SA 4 (4.08); PC 4 (4.08); joint yes"
    assert len(chat.bodies()) == 2 and chat.requests[0][1]["Authorization"] == "Bearer sk-test"


@pytest.mark.parametrize("reply, timeout, message", [
    (status(500, {"error": {"message": "model crashed"}}), "5",
     "after 4 tries: HTTP 500 (model crashed): the server is busy or failing, try again later"),
    (slow(5), "0.2", "after 4 tries: no answer within 0.2 s: raise the timeout, or check the server"),
    (status(200, b"garbage"), "5", "sent a reply that is not JSON"),
])
def test_a_failing_server_is_one_error_line_and_no_scores(videos, monkeypatch, capsys, reply, timeout, message):
    monkeypatch.setattr(ChatClient, "backoff", 0.0)
    server = ChatServer(default=reply)
    try:
        code, out, err = judge(capsys, videos[0], "--caption", CAPTION, "--judge", server.url, "--model", "m",
                               "--timeout", timeout, "--quiet")
    finally:
        server.close()
    assert code == 1 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("phyprompt judge: error: ") and message in err


@pytest.mark.parametrize("make_args, status_code, message", [
    (lambda v, d, tmp: [v[0], "--caption", CAPTION, "--judge", "http://127.0.0.1:9/v1"], 2,
     "phyprompt judge: error: --judge URL is a server: add --model NAME"),
    (lambda v, d, tmp: [v[0], "--caption", CAPTION, "--judge", d, "--model", "m"], 2,
     "phyprompt judge: error: --model names the model a server serves"),
    (lambda v, d, tmp: [v[0], "--judge", d], 2,
     "phyprompt judge: error: one of the arguments --caption --captions is required"),
    (lambda v, d, tmp: [tmp / "notes.txt", "--caption", CAPTION, "--judge", d], 2,
     "phyprompt judge: error: argument VIDEO: a video file must end in .mp4, .webm"),
    (lambda v, d, tmp: [v[0], "--caption", CAPTION, "--judge", d, "--frames", "0"], 2,
     "phyprompt judge: error: argument --frames: must be at least 1, not 0"),
    (lambda v, d, tmp: [*v, "--captions", tmp / "one.txt", "--judge", d], 2,
     "phyprompt judge: error: {tmp}/one.txt holds 1 captions for 2 videos: give one line per video, in the same order"),
    (lambda v, d, tmp: [v[0], "--caption", " ", "--judge", d], 1,
     "phyprompt judge: error: the caption is empty: say what the video should show"),
    (lambda v, d, tmp: [tmp / "missing.mp4", "--caption", CAPTION, "--judge", d], 1,
     "phyprompt judge: error: no video at {tmp}/missing.mp4"),
    (lambda v, d, tmp: [v[0], "--caption", CAPTION, "--judge", d, "--rules", tmp / "blank.txt"], 1,
     "phyprompt judge: error: {tmp}/blank.txt holds no rules"),
    (lambda v, d, tmp: [*v, "--captions", tmp / "notepad.txt", "--judge", d], 1,  # UTF-16 without a BOM
     "phyprompt judge: error: {tmp}/notepad.txt: looks like UTF-16 or UTF-32 text (78 of its 156 bytes are NUL); "
     "save the file as UTF-8"),
    (lambda v, d, tmp: [*v, "--captions", tmp / "nul.txt", "--judge", d], 1,
     "phyprompt judge: error: {tmp}/nul.txt:2: U+0000 (NUL) at column 7; prompt, caption and training files must "
     "be plain text: delete the character"),
    (lambda v, d, tmp: [v[0], "--caption", CAPTION, "--judge", tmp], 1,
     "phyprompt judge: error: {tmp} has no config.json, so it is not a Hugging Face model folder"),
])
def test_bad_arguments_exit_2_and_bad_input_exits_1_with_one_line(vlm_dir, videos, tmp_path, capsys, make_args,
                                                                  status_code, message):
    (tmp_path / "one.txt").write_text(CAPTION + "\n")
    (tmp_path / "blank.txt").write_text("\n  \n")
    (tmp_path / "notepad.txt").write_text(f"{CAPTION}\n{CAPTION}\n", encoding="utf-16-le")
    (tmp_path / "nul.txt").write_text(f"{CAPTION}\nA ball\x00 falls.\n")
    try:
        code = cli.main(["judge", *map(str, make_args(videos, vlm_dir, tmp_path))])
    except SystemExit as exit:  # argparse's errors
        code = exit.code
    err = capsys.readouterr().err
    assert code == status_code
    assert err.strip() == message.format(tmp=tmp_path) or err.startswith(message.format(tmp=tmp_path)), err
    assert len(err.strip().splitlines()) == 1


def test_the_autoeval_folder_is_opened_as_the_videophy2_judge(videos, tmp_path, capsys):
    from support.tiny_autoeval import write_tiny_autoeval

    folder = write_tiny_autoeval(tmp_path / "videophy_2_auto")
    code, out, err = judge(capsys, videos[0], "--caption", CAPTION, "--judge", folder, "--device", "cpu", "--json",
                           "--quiet")
    assert code == 0, err
    [row] = [json.loads(line) for line in out.splitlines()]
    assert row["judge"] == "videophy2" and row["frames"] == 9 and 1 <= row["sa"]["expected"] <= 5
    code, out, err = judge(capsys, videos[0], "--caption", CAPTION, "--judge", folder, "--frames", "8", "--quiet")
    assert code == 1 and err == ("phyprompt judge: error: VideoPhy-2's AutoEval always looks at the 32 frames it was "
                                 "trained on: leave out the frame count\n")


def test_a_folder_of_another_model_exits_1(tiny_refiner_dir, videos):
    run = subprocess.run([sys.executable, "-m", "phyprompt", "judge", videos[0], "--caption", CAPTION,
                          "--judge", tiny_refiner_dir], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.strip() == (
        f"phyprompt judge: error: {tiny_refiner_dir} holds a model with model_type 'qwen2' (Qwen2ForCausalLM), which "
        "is not a judge this version knows: give VideoPhy-2's AutoEval folder (videophysics/videophy_2_auto), a "
        "video-language model folder (Qwen2.5-VL, Qwen3-VL, Cosmos-Reason2) or an OpenAI-compatible server's "
        "http(s) address")


def test_cancel_exits_130(vlm_dir, videos, monkeypatch, capsys):
    def interrupt(self, done, total):  # Ctrl+C once the first video is judged
        raise KeyboardInterrupt

    monkeypatch.setattr(TqdmProgress, "__call__", interrupt)
    code, out, err = judge(capsys, *videos, "--caption", CAPTION, "--judge", vlm_dir, "--device", "cpu")
    assert code == 130 and out == "" and err.strip().splitlines()[-1] == "phyprompt: cancelled"


@pytest.mark.parametrize("args, status_code", [(["judge", "--help"], 0),
                                               (["judge", "a.mp4", "--caption", "x", "--judge", "http://x"], 2)])
def test_help_and_argument_errors_do_not_import_torch(args, status_code):
    run = subprocess.run([sys.executable, "-c", _REPORT_IMPORTS, *args], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert run.stderr.splitlines()[-1] == f"[] {status_code}", run.stderr
