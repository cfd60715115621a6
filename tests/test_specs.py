"""Specs, built once where a user's input enters (`infra.kinds.ModelSpec`: `RefinerSpec`, `JudgeSpec`;
`video.spec.BackendSpec`; `infra.endpoint.ServerSpec`): how a user's string becomes one, what a spec refuses
before anything loads, that it opens what it says, and its identity (cache keys)."""

import dataclasses
import json
import os
import shutil

import pytest

from phyprompt.infra.endpoint import EndpointError, ServerSpec, is_server
from phyprompt.infra.kinds import OptionError
from phyprompt.judges import JudgeLoadError, JudgeSpec
from phyprompt.refiners import RefinerLoadError, RefinerSpec
from phyprompt.video.spec import BackendSpec
from phyprompt_toy_backend import write_toy_model
from phyprompt_toy_judge import write_toy_judge
from phyprompt_toy_refiner import write_toy_refiner


def test_a_server_address_is_read_in_one_place():
    assert is_server("http://127.0.0.1:11434/v1") and is_server("  HTTPS://api.openai.com/v1")
    assert not is_server("models/http-refiner") and not is_server("builtin") and not is_server("ftp://host/v1")


def test_a_server_spec_is_checked_and_normalised_when_made():
    spec = ServerSpec(" http://h:1/v1/ ", " qwen2.5:7b ", keep_alive="0", timeout=3)
    assert (spec.url, spec.model, spec.keep_alive, spec.timeout) == ("http://h:1/v1/", "qwen2.5:7b", 0, 3.0)
    assert spec.identity() == {"url": "http://h:1/v1/chat/completions", "model": "qwen2.5:7b"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.model = "other"
    with pytest.raises(EndpointError, match="model is empty: give the model name the server knows"):
        ServerSpec("http://h/v1", "  ")
    with pytest.raises(EndpointError, match="retries must be 0 or more"):
        ServerSpec("http://h/v1", "m", retries=-1)


def test_a_refiners_string_becomes_its_kind_once(tiny_refiner_dir, tmp_path):
    server = RefinerSpec.parse("http://h/v1", model="m", api_key_env="KEY", dtype="bf16", device="cuda")
    assert server.kind == "api" and server.options == {}  # where a server runs it is the server's business
    assert server.source == ServerSpec("http://h/v1", "m", api_key_env="KEY")
    # a command line offers a server's settings too: a model on disk leaves them out
    local = RefinerSpec.parse(tiny_refiner_dir, model="m", api_key_env="KEY", device="cpu", adapter=None)
    assert local == RefinerSpec("local", tiny_refiner_dir, {"device": "cpu"})
    assert RefinerSpec.parse("builtin").kind == "local"
    assert RefinerSpec.parse(write_toy_refiner(tmp_path)).kind == "toy"  # the plugin recognises its file
    assert RefinerSpec.parse("~/refiners/qwen").source == os.path.expanduser("~/refiners/qwen")


def test_a_spec_refuses_what_its_kind_does_not_take(tiny_refiner_dir, tmp_path):
    with pytest.raises(OptionError, match="style is not an option of the local refiner"):
        RefinerSpec.build("local", tiny_refiner_dir, style="vivid")
    with pytest.raises(OptionError, match="quantization must be one of: none, 8bit, 4bit; not '2bit'"):
        RefinerSpec.build("local", tiny_refiner_dir, quantization="2bit")
    with pytest.raises(OptionError, match="adapter is not an option of the toy refiner"):
        RefinerSpec.build("toy", write_toy_refiner(tmp_path), adapter=tiny_refiner_dir)
    with pytest.raises(ValueError, match="unknown refiner kind 'gpt'; choose one of: local, api, toy"):
        RefinerSpec.build("gpt", tiny_refiner_dir)
    with pytest.raises(RefinerLoadError, match="the built-in refiner brings its own adapter"):
        RefinerSpec.build("local", "builtin", adapter=tiny_refiner_dir)
    with pytest.raises(EndpointError, match="keep_alive must be seconds"):
        RefinerSpec.build("api", "http://h/v1", model="m", keep_alive="soon")
    with pytest.raises(ValueError, match="offload is not an option of the toy backend"):
        BackendSpec.build("toy", write_toy_model(tmp_path), offload="model")


def test_a_judges_string_becomes_its_kind_by_its_config(tmp_path):
    (tmp_path / "autoeval").mkdir()
    (tmp_path / "autoeval" / "config.json").write_text(json.dumps({"model_type": "mplug-owl"}))
    spec = JudgeSpec.parse(str(tmp_path / "autoeval"), dtype="fp32", device="cpu", api_key_env="KEY", timeout=5)
    assert spec == JudgeSpec("videophy2", str(tmp_path / "autoeval"), {"dtype": "fp32", "device": "cpu"})
    toy = JudgeSpec.parse(write_toy_judge(tmp_path / "toy"), strictness="strict", dtype="fp32", device="cpu")
    assert toy == JudgeSpec("toy", str(tmp_path / "toy"), {"strictness": "strict", "device": "cpu"})  # no dtype
    with pytest.raises(OptionError, match="strictness is not an option of the videophy2 judge"):
        JudgeSpec.parse(str(tmp_path / "autoeval"), strictness="strict")
    with pytest.raises(JudgeLoadError, match="the model name is for a judge on a server"):
        JudgeSpec.parse(str(tmp_path / "toy"), model="qwen2.5vl:7b")


def test_a_spec_opens_what_it_says(tiny_refiner_dir, tmp_path):
    refiner = RefinerSpec.build("local", tiny_refiner_dir, dtype="fp32", device="cpu").open()
    assert (refiner.spec.model, refiner.spec.dtype, refiner.spec.device) == (tiny_refiner_dir, "fp32", "cpu")
    toy = RefinerSpec.build("toy", write_toy_refiner(tmp_path), style="vivid", device="cpu").open()
    assert toy.refine("a ball falls", seed=1)[0].prompt == "a ball falls, FRICTION SLOWS IT"
    backend = BackendSpec.build("toy", write_toy_model(tmp_path), device="cpu", brightness="dim").open()
    assert backend.scale == 0.5


def test_an_identity_names_the_weights_by_content_not_by_path_or_placement(tiny_refiner_dir, tmp_path):
    copy = str(shutil.copytree(tiny_refiner_dir, tmp_path / "copy"))
    here = RefinerSpec.build("local", tiny_refiner_dir, device="cpu").identity()
    there = RefinerSpec.build("local", copy, device="cuda", dtype="bf16").identity()  # placement: the host's
    assert here == there and set(here) == {"kind", "model", "adapter"} and here["adapter"] is None
    changed = shutil.copytree(tiny_refiner_dir, tmp_path / "changed")
    (changed / "config.json").write_text("{}")  # another model under the same file names
    assert RefinerSpec.build("local", str(changed)).identity() != here
    builtin = RefinerSpec.build("local", "builtin").identity()  # the files the built-in name stands for
    assert builtin["model"] and builtin["adapter"]
    toy = JudgeSpec.parse(write_toy_judge(tmp_path / "judge"), strictness="strict").identity()
    assert toy["kind"] == "toy" and toy["strictness"] == "strict"
    assert BackendSpec.build("toy", write_toy_model(tmp_path)).identity()["backend"] == "toy"
