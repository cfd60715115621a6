"""`python -m phyprompt generate` end to end, as a user runs it, on a tiny random CogVideoX.

The commands that render run as their own `python -m phyprompt` processes, started together a few at a
time by the module's `runs` fixture (each one spends seconds importing diffusers); the tests then check
the files and messages each left behind. The error cases call `cli.main` in this process (the same
code, without the import cost); two of them also run as processes, for the exit codes a shell sees.
"""

import inspect
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import av
import numpy as np
import pytest
from PIL import Image, ImageSequence

from conftest import REPO
from phyprompt import cli
from phyprompt.video.writer import side_by_side
from support.tiny_cogvideox import write_tiny_cogvideox
from support.tiny_refiner import TRAINED_PROMPT, TRAINED_REASONING

SIZE, FRAMES = 32, 9
TINY = ["--steps", "2", "--frames", str(FRAMES), "--size", f"{SIZE}x{SIZE}", "--device", "cpu"]
PROMPT = "a cat jumps onto a table"  # 13 tokens for the tiny T5 tokenizer, which reads 16
LONG_PROMPT = ("a red rubber ball falls from a balcony, bounces on the wet pavement three times, "
               "loses height with every bounce and rolls into a puddle")
GAP = inspect.signature(side_by_side).parameters["gap"].default


def phyprompt(args, cwd=REPO):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "phyprompt", "generate", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def cogvideox_dir(tmp_path_factory):
    return write_tiny_cogvideox(tmp_path_factory.mktemp("video-models") / "cogvideox")


@pytest.fixture(scope="module")
def not_cogvideox_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stable-diffusion")
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    return str(folder)


# name -> (arguments, given the model folders and an output folder; the exit code; what stderr says).
# Exit code 2 for bad arguments, which includes settings the video model cannot render; 1 for models,
# files and inputs that fail.
ERRORS = {
    "bad size syntax": (lambda m, out: [PROMPT, "--model", m["cogvideox"], "--size", "32by32"], 2,
                        "--size: expected WIDTHxHEIGHT in pixels, e.g. 720x480, not '32by32'"),
    "steps 0": (lambda m, out: [PROMPT, "--model", m["cogvideox"], "--steps", "0"], 2,
                "--steps: must be at least 1, not 0"),
    "negative guidance": (lambda m, out: [PROMPT, "--model", m["cogvideox"], "--guidance", "-1"], 2,
                          "--guidance: must be 0 or more, not -1"),
    "bad suffix": (lambda m, out: [PROMPT, "--model", m["cogvideox"], "--out", out / "v.avi"], 2,
                   "--out: the file name must end in .mp4, .webp, .gif"),
    "compare without refiner": (lambda m, out: [PROMPT, "--model", m["cogvideox"], "--compare"], 2,
                                "--compare needs --refiner"),
    "adapter without refiner": (lambda m, out: [PROMPT, "--model", m["cogvideox"], "--adapter", out], 2,
                                "--adapter needs --refiner"),
    "unknown backend": (lambda m, out: [PROMPT, "--model", m["cogvideox"], "--backend", "sora"], 2,
                        "invalid choice: 'sora'"),
    "empty prompt": (lambda m, out: ["  ", "--model", m["cogvideox"]], 1, "the prompt is empty"),
    "width not a multiple of 16": (
        lambda m, out: [PROMPT, "--model", m["cogvideox"], *TINY, "--size", "40x32", "--out", out / "w.mp4"], 2,
        "width 40 is not a multiple of 16 (the VAE and patch size); try 48"),
    "frames 5": (lambda m, out: [PROMPT, "--model", m["cogvideox"], *TINY, "--frames", "5", "--out", out / "f.mp4"],
                 2, "CogVideoX makes 1 + 8·k frames (e.g. 49), not 5; try 9"),
    "missing model folder": (lambda m, out: [PROMPT, "--model", out / "nope", *TINY], 1,
                             "CogVideoX folder not found"),
    "not a CogVideoX folder": (lambda m, out: [PROMPT, "--model", m["other"], *TINY], 1,
                               "holds a StableDiffusionPipeline, not a CogVideoXPipeline"),
    # the video model's folder is checked before minutes are spent refining
    "missing model folder with refiner": (
        lambda m, out: [PROMPT, "--model", out / "nope", "--refiner", m["refiner"], *TINY], 1,
        "CogVideoX folder not found"),
    "missing refiner": (lambda m, out: [PROMPT, "--model", m["cogvideox"], "--refiner", out / "nope", *TINY], 1,
                        "refiner folder not found"),
    "offload on CPU": (lambda m, out: [PROMPT, "--model", m["cogvideox"], *TINY, "--offload", "model"], 2,
                       "model CPU offload moves weights between the CPU and a CUDA GPU"),
}


IN_A_PROCESS = ("bad size syntax", "missing model folder", "frames 5")


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("generated")


@pytest.fixture(scope="module")
def runs(cogvideox_dir, not_cogvideox_dir, trained_refiner_dir, tiny_refiner_dir, out_dir):
    models = {"cogvideox": cogvideox_dir, "other": not_cogvideox_dir, "refiner": trained_refiner_dir}
    default_out = out_dir / "default"
    default_out.mkdir()
    commands = {
        # no --out: phyprompt-<seed>.mp4 in the current folder
        "plain": ([PROMPT, "--model", cogvideox_dir, *TINY, "--seed", "3"], default_out),
        "refined": ([PROMPT, "--model", cogvideox_dir, *TINY, "--refiner", trained_refiner_dir,
                     "--refiner-max-new-tokens", "80", "--compare", "--out", out_dir / "refined.mp4"], REPO),
        "gif": ([LONG_PROMPT, "--model", cogvideox_dir, *TINY, "--seed", "5", "--quiet",
                 "--out", out_dir / "first.gif"], REPO),
        "gif again": ([LONG_PROMPT, "--model", cogvideox_dir, *TINY, "--seed", "5", "--quiet",
                       "--out", out_dir / "again.gif"], REPO),
        # the untrained tiny refiner writes no prompt in 4 tokens: the video renders the original prompt
        "fell back": ([PROMPT, "--model", cogvideox_dir, *TINY, "--refiner", tiny_refiner_dir,
                       "--refiner-max-new-tokens", "4", "--quiet", "--out", out_dir / "fell-back.mp4"], REPO),
        "help": (["--help"], REPO),
    }
    for name in IN_A_PROCESS:
        commands[name] = (ERRORS[name][0](models, out_dir / "errors"), REPO)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(phyprompt, args, cwd) for name, (args, cwd) in commands.items()}
        return {name: future.result() for name, future in futures.items()}


def read_mp4(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        frames = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(stream)])
    return frames, fps


def read_gif(path):
    with Image.open(path) as image:
        return np.stack([np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)])


def succeeded(run):
    assert run.returncode == 0, run.stderr
    return [line for line in run.stdout.splitlines() if line.strip()]


# --- rendering ---------------------------------------------------------------------------------------

def test_plain_generate_writes_the_video_where_it_says(runs, out_dir):
    paths = succeeded(runs["plain"])
    assert paths == ["phyprompt-3.mp4", "phyprompt-3.json"]
    frames, fps = read_mp4(out_dir / "default" / "phyprompt-3.mp4")
    assert frames.shape == (FRAMES, SIZE, SIZE, 3)
    assert fps == pytest.approx(8.0)  # CogVideoX's frame rate
    assert frames.std() > 0  # not a blank video
    assert "denoising" in runs["plain"].stderr  # the progress bar
    assert "warning" not in runs["plain"].stderr  # the prompt fits


def test_plain_generate_records_prompt_and_settings(runs, out_dir, cogvideox_dir):
    record = json.loads((out_dir / "default" / "phyprompt-3.json").read_text(encoding="utf-8"))
    assert record["original_prompt"] == record["prompt"] == PROMPT
    assert record["backend"] == "cogvideox" and record["model"] == os.path.abspath(cogvideox_dir)
    assert record["refiner"] is None and record["refinement"] is None and record["comparison"] is None
    assert record["seed"] == 3 and record["video"] == "phyprompt-3.mp4"
    settings = record["settings"]
    assert (settings["steps"], settings["frames"], settings["width"], settings["height"]) == (2, FRAMES, SIZE, SIZE)
    assert (settings["guidance"], settings["scheduler"], settings["fps"]) == (6.0, "dpm", 8.0)  # the defaults


def test_refined_generate_records_the_refinement_beside_the_video(runs, out_dir, cogvideox_dir,
                                                                  trained_refiner_dir):
    from phyprompt.video import load_backend

    run = runs["refined"]
    paths = succeeded(run)
    assert paths == [str(out_dir / name) for name in ("refined.mp4", "refined-compare.mp4", "refined.json")]
    record = json.loads((out_dir / "refined.json").read_text(encoding="utf-8"))
    refinement = record["refinement"]
    assert record["prompt"] == refinement["prompt"] == TRAINED_PROMPT and refinement["ok"]
    assert refinement["reasoning"] == TRAINED_REASONING
    assert record["original_prompt"] == refinement["original"] == PROMPT
    assert record["refiner"] == os.path.abspath(trained_refiner_dir)
    # the budget was counted with the video model's own tokenizer
    backend = load_backend("cogvideox", cogvideox_dir, device="cpu")
    assert refinement["token_counter"] == backend.description == "the T5 tokenizer"
    assert refinement["tokens"] == backend.count(TRAINED_PROMPT)
    assert refinement["report"].startswith(f"{backend.count(TRAINED_PROMPT)}/226 tokens for cogvideox (counted with")
    assert refinement["report"] in run.stderr
    assert "refining" in run.stderr and "denoising (refined)" in run.stderr and "denoising (original)" in run.stderr
    # the refined prompt is longer than the tiny model's 16 tokens: said, not cut silently
    assert (f"phyprompt: warning: the refined prompt is {backend.count(TRAINED_PROMPT)} tokens (the T5 tokenizer) "
            "and cogvideox reads only 16; the rest is cut off\n") in run.stderr


def test_compare_puts_original_and_refined_side_by_side(runs, out_dir):
    succeeded(runs["refined"])
    refined, _ = read_mp4(out_dir / "refined.mp4")
    pair, fps = read_mp4(out_dir / "refined-compare.mp4")
    assert pair.shape == (FRAMES, SIZE, 2 * SIZE + GAP, 3) and fps == pytest.approx(8.0)
    # the refined video is on the right (up to H.264's losses)
    assert np.abs(pair[:, :, SIZE + GAP:].astype(int) - refined.astype(int)).mean() < 8
    assert json.loads((out_dir / "refined.json").read_text())["comparison"] == "refined-compare.mp4"


def test_a_refinement_that_fell_back_is_a_warning_and_exit_0(runs, out_dir):
    run = runs["fell back"]
    assert succeeded(run)[0] == str(out_dir / "fell-back.mp4")  # status 0: the video was written
    record = json.loads((out_dir / "fell-back.json").read_text(encoding="utf-8"))
    assert record["prompt"] == PROMPT and not record["refinement"]["ok"]
    [warning] = [line for line in run.stderr.splitlines() if line.startswith("phyprompt: warning:")]
    assert warning.startswith("phyprompt: warning: the refinement fell back to the original prompt (")
    assert warning.endswith("); the video shows the original prompt")


def test_gif_output(runs, out_dir):
    assert succeeded(runs["gif"])[0] == str(out_dir / "first.gif")
    frames = read_gif(out_dir / "first.gif")
    assert frames.shape[1:] == (SIZE, SIZE, 3) and 1 < len(frames) <= FRAMES  # GIF merges identical frames


def test_same_seed_same_video(runs, out_dir):
    succeeded(runs["gif"]), succeeded(runs["gif again"])
    assert (out_dir / "first.gif").read_bytes() == (out_dir / "again.gif").read_bytes()


def test_long_prompt_warns_even_when_quiet(runs):
    run = runs["gif"]
    warnings = [line for line in run.stderr.splitlines() if line.startswith("phyprompt: warning:")]
    assert len(warnings) == 1
    assert warnings[0].startswith("phyprompt: warning: the prompt is ")
    assert warnings[0].endswith("cogvideox reads only 16; the rest is cut off (shorten it, or refine it with --refiner)")
    assert "denoising" not in run.stderr and "Loading" not in run.stderr  # --quiet: no progress bars


def test_help_lists_the_backends(runs):
    run = runs["help"]
    assert run.returncode == 0
    assert "--backend {cogvideox,videocrafter2,lavie}" in run.stdout


# --- errors ------------------------------------------------------------------------------------------

def check_error(name, code, stdout, stderr, out_folder):
    expected_code, message = ERRORS[name][1:]
    assert code == expected_code, stderr
    errors = [line for line in stderr.splitlines() if ": error:" in line]
    assert len(errors) == 1 and message in errors[0], stderr
    # bad arguments (2) and failures (1) alike name the command, as argparse's own errors do
    assert errors[0].startswith("phyprompt generate: error:")
    assert stdout == "" and "refining" not in stderr
    assert not out_folder.exists() or not any(out_folder.iterdir())


@pytest.mark.parametrize("name", ERRORS)
def test_errors_exit_with_one_clear_line(name, cogvideox_dir, not_cogvideox_dir, trained_refiner_dir, tmp_path,
                                         capsys):
    models = {"cogvideox": cogvideox_dir, "other": not_cogvideox_dir, "refiner": trained_refiner_dir}
    try:
        code = cli.main(["generate", *map(str, ERRORS[name][0](models, tmp_path / "errors"))])
    except SystemExit as exit:  # argparse
        code = exit.code
    captured = capsys.readouterr()
    check_error(name, code, captured.out, captured.err, tmp_path / "errors")


@pytest.mark.parametrize("name", IN_A_PROCESS)
def test_errors_exit_codes_from_a_process(runs, out_dir, name):
    check_error(name, runs[name].returncode, runs[name].stdout, runs[name].stderr, out_dir / "errors")


def test_interrupt_exits_130_and_writes_nothing(cogvideox_dir, tmp_path, monkeypatch, capsys):
    from phyprompt.infra.progress import TqdmProgress

    def interrupt(self, done, total):
        if done == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(TqdmProgress, "__call__", interrupt)
    code = cli.main(["generate", PROMPT, "--model", cogvideox_dir, *TINY, "--out", str(tmp_path / "v.mp4")])
    assert code == 130
    assert capsys.readouterr().err.strip().endswith("phyprompt: cancelled")
    assert list(tmp_path.iterdir()) == []


def test_a_backend_whose_tokenizer_is_in_a_component_folder_refines_first(trained_refiner_dir, tmp_path, capsys):
    """LaVie reads its tokenizer from the SD folder (a component): the refiner's budget is counted with it
    before the video model loads."""
    from support.tiny_lavie import write_tiny_lavie_model

    checkpoint, components = write_tiny_lavie_model(tmp_path / "lavie")
    out = tmp_path / "lavie.mp4"
    code = cli.main(["generate", "a red ball bounces", "--backend", "lavie", "--model", checkpoint,
                     "--sd-folder", components["sd_folder"], "--refiner", trained_refiner_dir, "--steps", "2",
                     "--frames", "2", "--size", "32x32", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["refinement"]["token_counter"] != "estimate"


@pytest.mark.parametrize("backend, settings, message", [
    ("cogvideox", ["--size", "66x64"], "width 66 is not a multiple of 16 (the VAE and patch size); try 80"),
    ("cogvideox", ["--frames", "50"], "CogVideoX makes 1 + 8·k frames (e.g. 49), not 50; try 57"),
    ("videocrafter2", ["--size", "64x66"], "height 66 is not a multiple of 8 (the VAE); try 64"),
    ("lavie", ["--size", "66x64"], "width 66 is not a multiple of 8; try 72"),
    ("lavie", ["--steps", "1001"], "steps must be at most 1000, not 1001 (LaVie is made for 50)"),
    ("lavie", ["--scheduler", "dpm"], "unknown scheduler 'dpm'; choose one of: ddpm"),
    ("toy", ["--size", "12x8"], "toy sizes are multiples of 8"),  # a plugin's own check (tests/plugins)
])
def test_settings_no_model_can_render_fail_before_anything_loads(backend, settings, message, tmp_path, monkeypatch,
                                                                   capsys):
    """A 7 GB checkpoint is not loaded (nor a refiner run) to learn that --size is wrong: the description's
    check fails first, one line and exit 2 as argparse's own errors."""
    from phyprompt.refiners.local import LocalRefiner
    from phyprompt.video import backend_class

    def loaded(*args, **kwargs):
        pytest.fail("a model was loaded before the settings were checked")

    backend_type = backend_class(backend)
    monkeypatch.setattr(backend_type, "load", classmethod(loaded))
    monkeypatch.setattr(backend_type, "load_token_counter", classmethod(loaded))
    monkeypatch.setattr(LocalRefiner, "load", classmethod(loaded))
    code = cli.main(["generate", PROMPT, "--backend", backend, "--model", str(tmp_path / "model"), *settings,
                     "--refiner", str(tmp_path / "refiner"), "--out", str(tmp_path / "v.mp4")])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err == f"phyprompt generate: error: {message}\n"
    assert list(tmp_path.iterdir()) == []
