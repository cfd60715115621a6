"""A refiner kind and a judge kind from outside the project (tests/plugins: one module and one entry point each,
like the toy backend) reach the command line with no change to phyprompt/cli.py, phyprompt/commands/ or nodes/:
their descriptions add their options, a spec made from what the user typed opens them, and an option a kind
does not take is a bad argument (exit 2). The family contract tests run on them too (test_refiner.py,
test_registry.py), and test_comfyui.py checks their loader nodes."""

import json

import pytest
import torch

from phyprompt import cli
from phyprompt.video.writer import write_video
from phyprompt_toy_backend import write_toy_model
from phyprompt_toy_judge import write_toy_judge
from phyprompt_toy_refiner import write_toy_refiner


def run(capsys, *args) -> tuple[int, str, str]:
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as exit:  # argparse's own answers: --help, bad arguments
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def toys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toys")
    calm = torch.full((6, 16, 16, 3), 0.5)
    return {"refiner": write_toy_refiner(folder), "judge": write_toy_judge(folder / "toy-judge"),
            "video_model": write_toy_model(folder), "video": str(write_video(calm, 8, folder / "calm.mp4"))}


def test_help_offers_the_plugins_kinds_and_options(capsys):
    code, out, _ = run(capsys, "refine", "--help")
    text = " ".join(out.split())
    assert code == 0 and "--refiner-kind KIND" in text and "local, api, toy" in text
    assert "--style {plain,vivid} vivid: the phrase in capitals. (default: plain)" in text
    code, out, _ = run(capsys, "judge", "--help")
    assert code == 0 and "--strictness {lenient,strict}" in " ".join(out.split())


def test_refine_opens_the_plugin_refiner_its_file_names(toys, capsys):
    code, out, err = run(capsys, "refine", "a ball falls", "--model", toys["refiner"], "--style", "vivid",
                         "--seed", "1", "--device", "cpu", "--quiet")
    assert code == 0, err
    assert out.splitlines() == ["a ball falls, FRICTION SLOWS IT"]
    code, out, err = run(capsys, "refine", "a ball falls", "--refiner-kind", "toy", "--model", toys["refiner"],
                         "--json", "--quiet")
    assert code == 0, err
    assert json.loads(out)["reasoning"] == "The toy refiner adds: gravity pulls it down."


@pytest.mark.parametrize("args, message", [
    (["--refiner-kind", "local", "--style", "vivid"], "style is not an option of the local refiner"),
    (["--adapter", "somewhere"], "adapter is not an option of the toy refiner"),
    (["--quantization", "4bit"], "quantization is not an option of the toy refiner"),
    (["--refiner-kind", "api"], "the api refiner is on a server: give --endpoint URL and --endpoint-model NAME"),
], ids=["the plugin's option for local", "an adapter", "quantization", "a server kind without --endpoint"])
def test_an_option_the_kind_does_not_take_is_a_bad_argument(toys, capsys, args, message):
    code, out, err = run(capsys, "refine", "a ball falls", "--model", toys["refiner"], *args, "--quiet")
    assert code == 2 and out == "" and err == f"phyprompt refine: error: {message}\n"


def test_generate_refines_with_the_plugin_refiner(toys, tmp_path, capsys):
    out = tmp_path / "ball.mp4"
    code, printed, err = run(capsys, "generate", "a red ball rolls", "--backend", "toy", "--model",
                             toys["video_model"], "--refiner", toys["refiner"], "--style", "vivid", "--frames", "2",
                             "--device", "cpu", "--out", out, "--quiet")
    assert code == 0, err
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["prompt"] == "a red ball rolls, GRAVITY PULLS IT DOWN" and record["refinement"]["ok"]


def test_judge_opens_the_plugin_judge_its_folder_names(toys, capsys):
    caption = "a red ball rests on a wooden floor"
    code, out, err = run(capsys, "judge", toys["video"], "--caption", caption, "--judge", toys["judge"],
                         "--strictness", "strict", "--json", "--quiet")
    assert code == 0, err
    result = json.loads(out)
    assert (result["sa"]["score"], result["pc"]["score"], result["judge"]) == (5, 5, "toy-judge")
    code, out, err = run(capsys, "judge", toys["video"], "--caption", caption, "--judge", toys["refiner"],
                         "--strictness", "strict")
    assert code == 1 and "is a file" in err  # read as a judge source, it is no judge folder
    autoeval = toys["judge"] + "-autoeval"
    write_toy_judge(autoeval)
    with open(f"{autoeval}/config.json", "w") as handle:
        json.dump({"model_type": "mplug-owl"}, handle)
    code, out, err = run(capsys, "judge", toys["video"], "--caption", caption, "--judge", autoeval,
                         "--strictness", "strict")
    assert code == 2 and err == "phyprompt judge: error: strictness is not an option of the videophy2 judge\n"


def test_eval_compares_the_plugin_refiner_judged_by_the_plugin_judge(toys, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a ball falls\na glass tips over\n")
    out = tmp_path / "out"
    code, printed, err = run(capsys, "eval", prompts, "--backend", "toy", toys["video_model"], "--refiner",
                             f"toy={toys['refiner']}", "--judge", toys["judge"], "--device", "cpu", "--out", out,
                             "--quiet", "--bootstrap", "50", "--frames", "2")
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    assert [row["refiner"] for row in results["rows"]] == ["original", "toy"]
    assert results["run"]["refiners"]["toy"]["kind"] == "toy" and results["run"]["judge"]["kind"] == "toy"
