"""The video backend contract, which every backend in the registry must pass, and CogVideoX's own checks.

Backends are built tiny and random at test time (the configs diffusers' own tests use); the loading and
sampling code is the code that runs the real checkpoints.
"""

import json
import os
import shutil
from dataclasses import fields

import numpy as np
import pytest
import torch

from phyprompt.infra.progress import Cancelled
from phyprompt.language.targets import TARGETS
from phyprompt.video import (BackendInfo, DiffusersFolder, EightBit, SampleRequest, SingleFile, VideoModelError,
                             VideoSettingsError, backend_class, backend_names, load_backend)
from phyprompt.video.backend import BACKENDS
from phyprompt.video.writer import read_video, to_uint8, write_video
from phyprompt_toy_backend import write_toy_model
from support.tiny_cogvideox import write_tiny_cogvideox
from support.tiny_lavie import SETTINGS as LAVIE_SETTINGS
from support.tiny_lavie import write_tiny_lavie_model
from support.tiny_videocrafter2 import SETTINGS as VIDEOCRAFTER2_SETTINGS
from support.tiny_videocrafter2 import write_tiny_videocrafter2

# name -> (writer of a tiny model folder or file, small settings that backend can render quickly)
TINY = {
    "cogvideox": (write_tiny_cogvideox, dict(steps=2, frames=9, width=32, height=16)),
    "videocrafter2": (write_tiny_videocrafter2, VIDEOCRAFTER2_SETTINGS),
    "lavie": (write_tiny_lavie_model, LAVIE_SETTINGS),
    "toy": (write_toy_model, dict(steps=2, frames=3, width=16, height=8)),  # tests/plugins: a third-party backend
}
# a writer returns the model's path, or (path, {component: folder}) for a file that needs folders beside it
SETTING_NAMES = ["steps", "guidance", "frames", "width", "height"]


@pytest.fixture(scope="module")
def tiny_written(tmp_path_factory):
    written = {name: write(tmp_path_factory.mktemp(name) / "model") for name, (write, _) in TINY.items()}
    return {name: (w, {}) if isinstance(w, str) else w for name, w in written.items()}


@pytest.fixture(scope="module")
def tiny_folders(tiny_written):
    return {name: path for name, (path, _) in tiny_written.items()}


@pytest.fixture(scope="module")
def tiny_components(tiny_written):
    return {name: components for name, (_, components) in tiny_written.items()}


@pytest.fixture(scope="module", params=backend_names())
def backend(request, tiny_folders, tiny_components):
    if request.param not in TINY:
        pytest.fail(f"backend {request.param!r} has no tiny test model in tests/test_video_backends.py::TINY")
    return load_backend(request.param, tiny_folders[request.param], device="cpu", **tiny_components[request.param])


def small(backend, **overrides) -> SampleRequest:
    return SampleRequest(**({"prompt": "a red ball bounces on a wooden floor", "seed": 3}
                            | TINY[backend.info.name][1] | overrides))


# --- the contract -------------------------------------------------------------------------------

def test_the_plugin_backend_is_registered_after_the_built_in_ones():
    assert backend_names() == (*BACKENDS.builtin_names(), "toy")


def test_the_description_is_complete_and_consistent(backend):
    info = backend.info
    assert info.name in backend_names() and info.display_name and info.node_name.isidentifier()
    assert info.target in TARGETS
    assert isinstance(info.weights, (DiffusersFolder, SingleFile)) and info.weights.folder_kinds
    assert [s.name for s in info.settings] == SETTING_NAMES
    for setting in info.settings:
        assert setting.minimum <= setting.default <= setting.maximum, setting
    assert info.schedulers and info.fps > 0
    assert set(info.load_keywords) == {o.name for o in info.load_options} | {c.name for c in info.components}
    defaults = backend.defaults
    assert defaults.scheduler in info.schedulers and defaults.fps == info.fps


def test_settings_fill_defaults_and_check_the_described_ranges(backend):
    filled = backend.settings(SampleRequest(prompt="a ball"))
    assert list(filled) == [*SETTING_NAMES, "scheduler"]
    assert filled["steps"] == backend.defaults.steps and filled["scheduler"] == backend.defaults.scheduler
    top = next(s for s in backend.info.settings if s.name == "steps").maximum
    with pytest.raises(VideoSettingsError, match=f"steps must be at most {top}, not {top + 1}"):
        backend.settings(small(backend, steps=top + 1))


def test_the_official_settings_pass_the_description_check(backend):
    settings = type(backend).check_request(SampleRequest(prompt="a ball"))
    assert settings == {**{s.name: s.default for s in backend.info.settings}, "scheduler": backend.info.schedulers[0]}


def test_a_loaded_backend_says_which_float_type_its_8bit_conversion_runs_in(backend):
    assert backend.eight_bit.dtype != "model"  # the writer refuses "model"
    assert to_uint8(torch.rand(2, 4, 4, 3), backend.eight_bit).dtype == np.uint8


def test_modules_hold_the_weights(backend):
    modules = backend.modules()
    assert modules, "a backend loaded without CPU offload hands its modules to the host's memory management"
    assert all(isinstance(m, torch.nn.Module) for m in modules.values())
    assert sum(t.numel() for m in modules.values() for t in [*m.parameters(), *m.buffers()]) > 0


def test_frames_are_an_image_batch_in_0_1(backend):
    settings = TINY[backend.info.name][1]
    video = backend.sample(small(backend))
    assert video.frames.shape == (settings["frames"], settings["height"], settings["width"], 3)
    assert video.frames.dtype == torch.float32
    assert 0.0 <= float(video.frames.min()) and float(video.frames.max()) <= 1.0
    assert float(video.frames.std()) > 0  # not a blank video
    assert video.fps == backend.defaults.fps > 0


def test_same_seed_same_video_other_seed_other_video(backend):
    first, again = backend.sample(small(backend)), backend.sample(small(backend))
    assert torch.equal(first.frames, again.frames)
    assert not torch.equal(first.frames, backend.sample(small(backend, seed=4)).frames)


def test_release_frees_the_weights_and_the_next_use_loads_them_again(backend):
    """The one lifecycle of every model (phyprompt.infra.lifecycle), for every backend, plugins included."""
    from phyprompt.infra.lifecycle import HoldsWeights

    assert backend.in_process is True and backend.name == backend.info.name
    assert all(hasattr(backend, method) for method in HoldsWeights.__dict__ if not method.startswith("_"))
    before = backend.sample(small(backend)).frames
    held = backend.modules()
    backend.release()
    assert set(vars(backend)) == {"_reopen", "_released", "counter"}  # nothing loaded is kept
    assert backend.count("a ball") > 0  # the tokenizer stays
    assert torch.equal(backend.sample(small(backend)).frames, before)
    if held is not None:
        assert set(backend.modules()) == set(held) and all(
            backend.modules()[name] is not module for name, module in held.items())


def test_prompt_changes_the_video(backend):
    assert not torch.equal(backend.sample(small(backend)).frames,
                           backend.sample(small(backend, prompt="water pours into a glass")).frames)


def test_token_counting_uses_the_models_tokenizer(backend):
    short, long = backend.count("a ball"), backend.count("a ball " * 40)
    assert 0 < short < long
    assert backend.token_limit > 0 and backend.description


def test_token_counter_without_the_weights_counts_like_the_model(backend, tiny_folders, tiny_components):
    name = backend.info.name
    counter = type(backend).load_token_counter(tiny_folders[name], **tiny_components[name])
    assert counter.description == backend.description
    for text in ("a ball", "a red ball bounces on a wooden floor, " * 10, "猫が跳ぶ 🐱"):
        assert counter.count(text) == backend.count(text)


def test_progress_is_called_once_per_step(backend):
    calls = []
    backend.sample(small(backend, steps=3), progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_cancel_stops_between_steps_and_the_next_run_works(backend):
    calls = []

    def cancel_after_first(done, total):
        calls.append(done)
        if done == 1:
            raise Cancelled()

    with pytest.raises(Cancelled):
        backend.sample(small(backend, steps=20), progress=cancel_after_first)
    assert calls == [1]
    assert torch.equal(backend.sample(small(backend)).frames, backend.sample(small(backend)).frames)


@pytest.mark.parametrize("overrides, message", [
    (dict(steps=0), "steps must be at least 1"),
    (dict(guidance=-1.0), "guidance must be 0 or more"),
    (dict(prompt="   "), "the prompt is empty"),
])
def test_bad_settings_are_one_line_errors(backend, overrides, message):
    with pytest.raises(VideoSettingsError, match=message):
        backend.sample(small(backend, **overrides))


# --- 8-bit frames as each original saves them -----------------------------------------------------

def _cogvideox_saved(backend, decoded):
    """THUDM's demo: the pipeline's PIL frames (diffusers' numpy_to_pil), saved as they are."""
    [pil] = backend.pipeline.video_processor.postprocess_video(decoded[0], output_type="pil")
    return np.stack([np.asarray(image) for image in pil])


def _videocrafter2_saved(backend, decoded):
    """scripts/evaluation/funcs.py save_videos on the decoder's frames: float32, clamp, (x + 1) / 2, × 255, cut."""
    video = torch.clamp(torch.cat(decoded).float(), -1., 1.)  # (t, 3, H, W)
    video = (video + 1.0) / 2.0
    return (video * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _lavie_saved(backend, decoded):
    """base/pipelines/pipeline_videogen.py decode_latents, in the model's own type."""
    video = torch.cat(decoded).permute(0, 2, 3, 1)
    return ((video / 2 + 0.5) * 255).add_(0.5).clamp_(0, 255).to(dtype=torch.uint8).numpy()


@pytest.mark.parametrize("name, dtype, saved, conversion", [
    ("cogvideox", "bf16", _cogvideox_saved, EightBit("nearest")),  # CogVideoX-5B's precision
    # its save path widens to float32 whatever the model's type (fp16, its GPU default, does not run on a CPU)
    ("videocrafter2", "fp32", _videocrafter2_saved, EightBit("truncate", "float32")),
    ("lavie", "fp16", _lavie_saved, EightBit("half_up", "float16")),  # the original's precision
])
def test_a_written_video_has_the_originals_pixels(name, dtype, saved, conversion, tiny_folders, tiny_components,
                                                   tmp_path, monkeypatch):
    """The decoder's output of a real render, saved by the original's code (above) and by the writer with the
    backend's conversion: the same pixels (a lossless file keeps them)."""
    backend = load_backend(name, tiny_folders[name], device="cpu", dtype=dtype, **tiny_components[name])
    assert backend.eight_bit == conversion
    decoded = []
    if name == "cogvideox":  # diffusers decodes in tiles and frame batches: what the pipeline post-processes
        processor = backend.pipeline.video_processor
        postprocess = processor.postprocess_video

        def spy(video, output_type="np", **kwargs):
            decoded.append(video)
            return postprocess(video, output_type=output_type, **kwargs)

        monkeypatch.setattr(processor, "postprocess_video", spy)
    else:
        vae = backend.vae if name == "lavie" else backend.model.vae
        vae.decoder.register_forward_hook(lambda module, args, output: decoded.append(output.detach()))
    video = backend.sample(small(backend, steps=1))
    original = saved(backend, decoded)
    path = write_video(video.frames, video.fps, tmp_path / "video.webp", lossless=True, eight_bit=backend.eight_bit)
    assert np.array_equal(read_video(path)[0], original)
    if name != "cogvideox":  # rounding to the nearest level, which the writer did for every backend, is not theirs
        assert not np.array_equal(to_uint8(video.frames), original)


def test_a_backend_that_does_not_say_rounds_to_the_nearest_level(tiny_folders):
    toy = backend_class("toy")

    class Plugin(toy):  # the toy (which says "truncate") as a plugin that does not say
        info = BackendInfo(**{f.name: getattr(toy.info, f.name) for f in fields(BackendInfo) if f.name != "eight_bit"})

    backend = Plugin.load(tiny_folders["toy"])
    frames = backend.sample(small(backend)).frames
    assert backend.eight_bit == EightBit()
    assert np.array_equal(to_uint8(frames, backend.eight_bit), np.rint(frames.numpy() * 255).astype(np.uint8))
    assert not np.array_equal(to_uint8(frames, toy.info.eight_bit), to_uint8(frames, backend.eight_bit))


def test_unknown_backend_name():
    with pytest.raises(ValueError, match=f"unknown video backend 'sora'; choose one of: {', '.join(backend_names())}"):
        load_backend("sora", ".")


# --- CogVideoX ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cogvideox(tiny_folders):
    return load_backend("cogvideox", tiny_folders["cogvideox"], device="cpu")


def test_cogvideox_defaults_follow_the_official_settings(cogvideox):
    d = cogvideox.defaults
    assert (d.steps, d.guidance, d.fps, d.scheduler) == (50, 6.0, 8.0, "dpm")
    # the tiny transformer's sample size (2x2 latents, 9 frames) scaled by the VAE; THUDM's give 720x480x49
    assert (d.width, d.height, d.frames) == (16, 16, 9)
    assert cogvideox.token_limit == 16  # the transformer's max_text_seq_length (226 for the real models)


@pytest.mark.parametrize("overrides, message", [
    (dict(width=44), "width 44 is not a multiple of 16 .*try 48"),
    (dict(height=8), r"height must be at least 16, not 8 \(CogVideoX is made for 480\)"),
    (dict(frames=5), r"CogVideoX makes 1 \+ 8·k frames \(e.g. 49\), not 5; try 9"),
    (dict(frames=0), "not 0"),
    (dict(scheduler="euler"), "unknown scheduler 'euler'; choose one of: dpm, ddim"),
])
def test_cogvideox_rejects_what_it_cannot_render(cogvideox, overrides, message):
    with pytest.raises(VideoSettingsError, match=message):
        cogvideox.sample(small(cogvideox, **overrides))


def test_both_schedulers_render(cogvideox):
    dpm = cogvideox.sample(small(cogvideox, scheduler="dpm"))
    ddim = cogvideox.sample(small(cogvideox, scheduler="ddim"))
    assert dpm.frames.shape == ddim.frames.shape and not torch.equal(dpm.frames, ddim.frames)


def test_cpu_offload_needs_a_gpu(tiny_folders):
    with pytest.raises(VideoSettingsError, match="CPU offload moves weights between the CPU and a CUDA GPU"):
        load_backend("cogvideox", tiny_folders["cogvideox"], device="cpu", offload="model")


def _broken_copy(source, target, remove=None):
    shutil.copytree(source, target)
    if remove:
        path = os.path.join(target, remove)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    return str(target)


@pytest.mark.parametrize("remove, message", [
    (None, None),
    ("model_index.json", "no model_index.json"),
    ("transformer", "CogVideoX transformer folder not found"),
    ("vae/diffusion_pytorch_model.safetensors", "holds no weights"),
    ("text_encoder/config.json", "has no config.json"),
    ("scheduler", "scheduler/scheduler_config.json is missing"),
    ("tokenizer", "the tokenizer/ folder is missing"),
])
def test_incomplete_folders_are_named(tiny_folders, tmp_path, remove, message):
    folder = _broken_copy(tiny_folders["cogvideox"], tmp_path / "copy", remove)
    if message is None:
        assert load_backend("cogvideox", folder, device="cpu").token_limit == 16
    else:
        with pytest.raises(VideoModelError, match=message):
            load_backend("cogvideox", folder, device="cpu")


def test_missing_folder_and_wrong_model_type(tiny_folders, tmp_path):
    with pytest.raises(VideoModelError, match="CogVideoX folder not found"):
        load_backend("cogvideox", str(tmp_path / "nope"))
    folder = _broken_copy(tiny_folders["cogvideox"], tmp_path / "sd")
    with open(os.path.join(folder, "model_index.json")) as f:
        index = json.load(f)
    with open(os.path.join(folder, "model_index.json"), "w") as f:
        json.dump(index | {"_class_name": "StableDiffusionPipeline"}, f)
    with pytest.raises(VideoModelError, match="holds a StableDiffusionPipeline, not a CogVideoXPipeline"):
        load_backend("cogvideox", folder)


def test_truncated_transformer_weights(tiny_folders, tmp_path):
    folder = _broken_copy(tiny_folders["cogvideox"], tmp_path / "truncated")
    weights = os.path.join(folder, "transformer", "diffusion_pytorch_model.safetensors")
    data = open(weights, "rb").read()
    open(weights, "wb").write(data[: len(data) // 2])
    with pytest.raises(VideoModelError, match="truncated"):
        load_backend("cogvideox", folder)


def test_dtype_choice(tiny_folders):
    backend = load_backend("cogvideox", tiny_folders["cogvideox"], device="cpu", dtype="bf16")
    assert backend.pipeline.transformer.dtype == torch.bfloat16
    with pytest.raises(VideoModelError, match="unknown dtype"):
        load_backend("cogvideox", tiny_folders["cogvideox"], dtype="int3")
