"""A backend from outside the project (tests/plugins: one module and one `phyprompt.video_backends` entry
point) reaches the CLI with no change to phyprompt/cli.py, phyprompt/commands/ or nodes/: its description
drives `generate --help` and `generate` renders with it. (The contract tests in test_video_backends.py run
on it too, and test_comfyui.py checks its nodes.)"""

import json
import os
import subprocess
import sys

import av
import numpy as np
import pytest

from conftest import PLUGINS, REPO
from phyprompt.video import SampleRequest
from phyprompt.video.writer import read_video, to_uint8
from phyprompt_toy_backend import WORD_LIMIT, ToyBackend, write_toy_model


def phyprompt(*args, cwd=REPO):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(PLUGINS)]), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "phyprompt", "generate", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory):
    return write_toy_model(tmp_path_factory.mktemp("toy"))


def test_help_describes_the_plugin_backend():
    run = phyprompt("--help")
    assert run.returncode == 0, run.stderr
    out = " ".join(run.stdout.split())
    assert "--backend {cogvideox,videocrafter2,lavie,toy}" in out
    assert "toy: a palette random walk for tests; --model is a .toy.safetensors checkpoint file" in out
    assert "defaults 4 steps, guidance 1, 6 frames, 24x16, scheduler walk/jump, 12 fps" in out
    assert "--scheduler {dpm,ddim,ddpm,walk,jump}" in out
    assert "--brightness {normal,dim}" in out  # the toy's own load option


def test_generate_renders_with_the_plugin_backend(toy_model, tmp_path):
    out = tmp_path / "toy.mp4"
    run = phyprompt("a red ball bounces", "--backend", "toy", "--model", toy_model, "--brightness", "dim",
                    "--frames", "4", "--size", "16x8", "--out", out, "--quiet")
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [str(out), str(out.with_suffix(".json"))]
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert sum(1 for _ in container.decode(stream)) == 4
        assert (stream.codec_context.width, stream.codec_context.height) == (16, 8)
        assert float(stream.average_rate) == pytest.approx(12.0)
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["backend"] == "toy"
    settings = record["settings"]
    assert (settings["steps"], settings["guidance"], settings["scheduler"]) == (4, 1.0, "walk")  # its defaults
    assert settings["brightness"] == "dim" and "offload" not in settings


def test_the_plugin_budget_and_options_are_its_own(toy_model, tmp_path):
    long_prompt = "a heavy steel ball rolls across a wooden floor and knocks over dominoes"
    run = phyprompt(long_prompt, "--backend", "toy", "--model", toy_model, "--out", tmp_path / "v.gif", "--quiet")
    assert run.returncode == 0, run.stderr
    assert f"and toy reads only {WORD_LIMIT}; the rest is cut off" in run.stderr
    wrong = phyprompt("a ball", "--backend", "toy", "--model", toy_model, "--offload", "model")
    assert wrong.returncode == 2
    assert "--offload is not an option of the toy backend" in wrong.stderr


def test_generate_writes_the_8bit_levels_the_plugin_describes(toy_model, tmp_path):
    """The toy's description says its frames become 8-bit by truncation: the file holds those levels (a GIF
    of a few colours keeps them exactly), not the nearest ones the writer makes by default."""
    out = tmp_path / "toy.gif"
    run = phyprompt("a red ball bounces", "--backend", "toy", "--model", toy_model, "--seed", "5", "--frames", "4",
                    "--size", "16x8", "--out", out, "--quiet")
    assert run.returncode == 0, run.stderr
    request = SampleRequest(prompt="a red ball bounces", seed=5, frames=4, width=16, height=8)
    frames = ToyBackend.load(toy_model).sample(request).frames
    written, _ = read_video(out)
    assert np.array_equal(written, to_uint8(frames, ToyBackend.info.eight_bit))
    assert not np.array_equal(written, to_uint8(frames))
