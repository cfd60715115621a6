"""VideoCrafter2's own checks: the original checkpoint layout and YAML, the key map round trip through the
converter, strict loading, bad inputs, the DDIM sampler with scale_b, and the tokenizer. (The backend contract
runs over it in test_video_backends.py; numerical parity with the original code is checked outside the
tests, against AILab-CVC/VideoCrafter itself.)"""

import copy
import json
import os
import pickle

import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors import safe_open

from phyprompt.cli import main
from phyprompt.video import SampleRequest, VideoModelError, VideoSettingsError, load_backend
from phyprompt.video.videocrafter2 import keys
from phyprompt.video.videocrafter2.config import DiffusionConfig, TextConfig, VideoCrafter2Config, read_yaml
from phyprompt.video.videocrafter2.convert import convert
from phyprompt.video.videocrafter2.model import load_model, port_state_dict
from phyprompt.video.videocrafter2.sampler import ddim_timesteps, sample
from phyprompt.video.videocrafter2.schedule import Schedule
from support.tiny_videocrafter2 import (TEXT_LAYERS, TEXT_WIDTH, original_state_dict, write_tiny_videocrafter2,
                                        yaml_document)

# configs/inference_t2v_512_v2.0.yaml of the original release, as published
OFFICIAL_YAML = """
model:
  target: lvdm.models.ddpm3d.LatentDiffusion
  params:
    linear_start: 0.00085
    linear_end: 0.012
    num_timesteps_cond: 1
    timesteps: 1000
    first_stage_key: video
    cond_stage_key: caption
    cond_stage_trainable: false
    conditioning_key: crossattn
    image_size: [40, 64]
    channels: 4
    scale_by_std: false
    scale_factor: 0.18215
    use_ema: false
    uncond_type: empty_seq
    use_scale: true
    scale_b: 0.7
    unet_config:
      target: lvdm.modules.networks.openaimodel3d.UNetModel
      params: {in_channels: 4, out_channels: 4, model_channels: 320, attention_resolutions: [4, 2, 1],
               num_res_blocks: 2, channel_mult: [1, 2, 4, 4], num_head_channels: 64, transformer_depth: 1,
               context_dim: 1024, use_linear: true, use_checkpoint: true, temporal_conv: true,
               temporal_attention: true, temporal_selfatt_only: true, use_relative_position: false,
               use_causal_attention: false, temporal_length: 16, addition_attention: true, fps_cond: true}
    first_stage_config:
      target: lvdm.models.autoencoder.AutoencoderKL
      params:
        embed_dim: 4
        monitor: val/rec_loss
        ddconfig: {double_z: true, z_channels: 4, resolution: 512, in_channels: 3, out_ch: 3, ch: 128,
                   ch_mult: [1, 2, 4, 4], num_res_blocks: 2, attn_resolutions: [], dropout: 0.0}
        lossconfig: {target: torch.nn.Identity}
    cond_stage_config:
      target: lvdm.modules.encoders.condition.FrozenOpenCLIPEmbedder
      params: {freeze: true, layer: penultimate}
"""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_videocrafter2(tmp_path_factory.mktemp("vc2") / "model.ckpt")


@pytest.fixture(scope="module")
def model(checkpoint):
    return load_model(checkpoint)


def _copy_with(tmp_path, state_dict, document=None, wrap=lambda sd: {"state_dict": sd}) -> str:
    path = str(tmp_path / "model.ckpt")
    torch.save(wrap(state_dict), path)
    with open(tmp_path / "model.yaml", "w") as f:
        yaml.safe_dump(document or yaml_document(), f)
    return path


def _unet_output(model):
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(1, 4, 3, 8, 8, generator=generator)
    context = torch.randn(1, 77, 64, generator=generator)
    return model.unet(x, torch.tensor([500]), context, torch.tensor([28]))


# --- configuration ------------------------------------------------------------------------------

def test_the_built_in_defaults_are_the_official_yaml(tmp_path):
    (tmp_path / "official.yaml").write_text(OFFICIAL_YAML)
    config, text = read_yaml(tmp_path / "official.yaml")
    assert (config, text) == (VideoCrafter2Config(), TextConfig())
    # OpenCLIP ViT-H-14's text tower, the one the release was trained with: 16 heads of 64, exact GELU
    assert (text.arch, text.width, text.heads, text.layers, text.used_layers, text.activation) == (
        "ViT-H-14", 1024, 16, 24, 23, "gelu")


def _with_text(document=None, **edits) -> dict:
    """The tiny YAML with its cond_stage_config edited: `params` keys, or `text_cfg`/`quick_gelu` beside them."""
    document = copy.deepcopy(document or yaml_document())
    cond_stage = document["model"]["params"]["cond_stage_config"]
    for key, value in edits.items():
        target = cond_stage["params"] if key in ("arch", "layer") else cond_stage
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    return document


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["model"]["params"]["unet_config"]["params"].pop("model_channels"),
     "lacks 1 required key: model.params.unet_config.params.model_channels"),
    (lambda d: d["model"]["params"].pop("first_stage_config"), "has no model.params.first_stage_config.params"),
    (lambda d: d["model"]["params"]["unet_config"]["params"].update(use_relative_position=True),
     "variant this port does not implement: use_relative_position: True"),
    (lambda d: d["model"]["params"]["cond_stage_config"].update(target="x.FrozenCLIPEmbedder"),
     "FrozenCLIPEmbedder text encoder"),
    (lambda d: d["model"]["params"]["unet_config"]["params"].pop("use_relative_position"),
     r"variant this port does not implement: use_relative_position: True \(lvdm's default when left out\)"),
    (lambda d: d["model"]["params"]["first_stage_config"]["params"]["ddconfig"].update(tanh_out=True),
     "variant this port does not implement: tanh_out: True"),
    # the text tower: each field the port cannot build is named
    (lambda d: d.update(_with_text(d, arch="ViT-X-99", text_cfg=None)),
     r"model.params.cond_stage_config.params.arch 'ViT-X-99' is not an OpenCLIP architecture this port knows "
     r"\(ViT-B-32, .*\); .*model.params.cond_stage_config.text_cfg with width, heads, layers"),
    (lambda d: d.update(_with_text(d, arch="ViT-H-14", text_cfg={"heads": 8})),
     "model.params.cond_stage_config.text_cfg.heads is 8, but model.params.cond_stage_config.params.arch "
     "ViT-H-14 has 16"),
    (lambda d: d.update(_with_text(d, arch="ViT-H-14", text_cfg=None, quick_gelu=True)),
     "model.params.cond_stage_config.quick_gelu is True, but .*ViT-H-14 has False"),
    (lambda d: d.update(_with_text(d, text_cfg={"width": 64, "heads": 1, "layers": 3, "ls_init_value": 0.1})),
     "model.params.cond_stage_config.text_cfg.ls_init_value is not implemented by this port"),
    (lambda d: d.update(_with_text(d, text_cfg={"width": 64, "heads": 3, "layers": 3})),
     "model.params.cond_stage_config.text_cfg.heads 3 does not divide the width 64"),
    (lambda d: d.update(_with_text(d, text_cfg={"width": 64, "heads": "two", "layers": 3})),
     "model.params.cond_stage_config.text_cfg.heads must be a positive whole number, not 'two'"),
    (lambda d: d.update(_with_text(d, layer="pooled")),
     "model.params.cond_stage_config.params.layer must be last or penultimate, not 'pooled'"),
])
def test_yaml_problems_are_named(tmp_path, edit, message):
    document = copy.deepcopy(yaml_document())
    edit(document)
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(document))
    with pytest.raises(VideoModelError, match=message):
        read_yaml(tmp_path / "model.yaml")


# --- the text tower: what the config names, not what the width suggests -------------------------

def open_clip_text(original: dict, tokens: torch.Tensor, heads: int, quick_gelu: bool, blocks: int) -> torch.Tensor:
    """OpenCLIP's text encoding as lvdm's FrozenOpenCLIPEmbedder runs it, computed independently of the port
    from the original tensors: token + positional embeddings, `blocks` residual attention blocks (torch's own
    MultiheadAttention with `heads` heads on the packed in_proj, OpenCLIP's causal mask; GELU or QuickGELU MLP),
    then ln_final."""
    p = keys.TEXT
    x = F.embedding(tokens, original[p + "token_embedding.weight"]) + original[p + "positional_embedding"]
    length, width = x.shape[1:]
    causal = torch.full((length, length), float("-inf")).triu(1)  # OpenCLIP's build_attention_mask
    act = (lambda y: y * torch.sigmoid(1.702 * y)) if quick_gelu else F.gelu
    for i in range(blocks):
        block = f"{p}transformer.resblocks.{i}."
        attention = torch.nn.MultiheadAttention(width, heads, batch_first=True)
        attention.load_state_dict({name: original[block + "attn." + name] for name in
                                   ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")})
        h = F.layer_norm(x, (width,), original[block + "ln_1.weight"], original[block + "ln_1.bias"])
        x = x + attention(h, h, h, need_weights=False, attn_mask=causal)[0]
        h = F.layer_norm(x, (width,), original[block + "ln_2.weight"], original[block + "ln_2.bias"])
        h = act(F.linear(h, original[block + "mlp.c_fc.weight"], original[block + "mlp.c_fc.bias"]))
        x = x + F.linear(h, original[block + "mlp.c_proj.weight"], original[block + "mlp.c_proj.bias"])
    return F.layer_norm(x, (width,), original[p + "ln_final.weight"], original[p + "ln_final.bias"])


@pytest.mark.parametrize("heads, quick_gelu", [(2, False), (4, True)])
def test_a_text_tower_whose_heads_are_not_64_wide_encodes_as_open_clip(tmp_path, heads, quick_gelu):
    """Weights do not depend on the head count: a 64-wide tower of 2 or 4 heads loads into any head count.
    The YAML says which (and whether it uses QuickGELU); the encoding must be OpenCLIP's with those heads."""
    original = original_state_dict()
    document = _with_text(text_cfg={"width": TEXT_WIDTH, "heads": heads, "layers": TEXT_LAYERS},
                          quick_gelu=quick_gelu)
    model = load_model(_copy_with(tmp_path, original, document))
    assert (model.text_config.heads, model.text_config.activation) == (heads, "quick_gelu" if quick_gelu else "gelu")
    tokens = model.tokenize(["a red rubber ball falls onto a wooden floor and bounces", ""])
    ours = model.encode(tokens)
    with torch.no_grad():
        expected = open_clip_text(original, tokens, heads, quick_gelu, blocks=TEXT_LAYERS - 1)
        # what reading the head count off the width (64 // 64 = 1 head) computes instead
        guessed = open_clip_text(original, tokens, TEXT_WIDTH // 64, quick_gelu, blocks=TEXT_LAYERS - 1)
    assert (ours - expected).abs().max() < 2e-5
    assert (guessed - expected).abs().max() > 0.1  # the head count moves the embeddings: the check has teeth


def test_the_port_and_the_reference_agree_on_the_tiny_release_shape(model, checkpoint):
    """The tiny model's own tower (1 head of 64, GELU), as every OpenCLIP arch has heads of 64."""
    original = torch.load(checkpoint, weights_only=True)["state_dict"]
    tokens = model.tokenize(["a ball", "water pours into a glass"])
    with torch.no_grad():
        expected = open_clip_text(original, tokens, 1, False, blocks=TEXT_LAYERS - 1)
    assert (model.encode(tokens) - expected).abs().max() < 2e-5


@pytest.mark.parametrize("edits, message", [
    ({"arch": None, "text_cfg": None},  # the default arch, ViT-H-14
     r"model.yaml: the text tower model.params.cond_stage_config.params.arch ViT-H-14 describes is not the "
     r"checkpoint's: width 1024 \(the checkpoint's: 64\), layers 24 \(the checkpoint's: 3\)"),
    ({"text_cfg": {"width": TEXT_WIDTH, "heads": 1, "layers": 4}},
     r"the text tower model.params.cond_stage_config.text_cfg describes is not the checkpoint's: layers 4 "
     r"\(the checkpoint's: 3\)"),
])
def test_a_config_whose_text_tower_is_not_the_checkpoints_is_refused(tmp_path, edits, message):
    with pytest.raises(VideoModelError, match=message):
        load_model(_copy_with(tmp_path, original_state_dict(), _with_text(**edits)))


def test_an_explicit_config_is_read_instead_of_the_one_beside(tmp_path, model):
    bare = tmp_path / "bare"
    bare.mkdir()
    checkpoint = str(bare / "model.ckpt")
    torch.save({"state_dict": original_state_dict()}, checkpoint)
    with pytest.raises(VideoModelError, match="the built-in config .*OpenCLIP ViT-H-14.*width 1024 "
                                              r"\(the checkpoint's: 64\).*--config"):
        load_model(checkpoint)  # nothing beside it: the official release's architecture, which it is not
    elsewhere = tmp_path / "configs" / "tiny.yaml"
    elsewhere.parent.mkdir()
    elsewhere.write_text(yaml.safe_dump(_with_text(text_cfg={"width": TEXT_WIDTH, "heads": 2, "layers": TEXT_LAYERS})))
    two_heads = load_backend("videocrafter2", checkpoint, device="cpu", config=str(elsewhere)).model
    assert two_heads.text_config.heads == 2
    tokens = model.tokenize(["a ball"])
    assert not torch.equal(two_heads.encode(tokens), model.encode(tokens))  # the 1-head YAML beside the fixture's
    # given explicitly, it wins over the one beside the checkpoint
    beside = _copy_with(tmp_path, original_state_dict())
    assert load_model(beside, config=str(elsewhere)).text_config.heads == 2
    with pytest.raises(VideoModelError, match="VideoCrafter2 config not found: .*missing.yaml"):
        load_model(checkpoint, config=str(tmp_path / "missing.yaml"))
    # convert takes it too, and the folder carries it: no config is given (or taken) with a converted folder
    folder = tmp_path / "converted"
    assert main(["convert", "videocrafter2", checkpoint, str(folder), "--config", str(elsewhere)]) == 0
    converted = load_model(str(folder))
    assert converted.text_config == two_heads.text_config
    torch.testing.assert_close(converted.encode(tokens), two_heads.encode(tokens), rtol=0, atol=1e-6)
    with pytest.raises(VideoModelError, match="converted folder, which carries its own config"):
        load_model(str(folder), config=str(elsewhere))


def test_generate_takes_the_config_and_other_backends_refuse_it(tmp_path, capsys):
    checkpoint = str(tmp_path / "renamed.ckpt")
    torch.save({"state_dict": original_state_dict()}, checkpoint)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(yaml_document()))
    out = tmp_path / "ball.mp4"
    assert main(["generate", "a red ball bounces", "--backend", "videocrafter2", "--model", checkpoint,
                 "--config", str(config), "--steps", "1", "--frames", "3", "--size", "64x64", "--device", "cpu",
                 "--out", str(out), "--quiet"]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["settings"]["config"] == str(config)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["generate", "a ball", "--backend", "cogvideox", "--model", str(tmp_path), "--config", str(config)])
    assert "--config is not an option of the cogvideox backend" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["convert", "lavie", checkpoint, str(tmp_path / "x"), "--config", str(config)])
    assert "--config is not an option of the lavie backend" in capsys.readouterr().err


# --- loading and the key map --------------------------------------------------------------------

def test_every_original_tensor_is_used_except_the_unused_text_head(checkpoint, model):
    original = torch.load(checkpoint, weights_only=True)["state_dict"]
    ported = keys.to_port(original, vae_levels=4, text_layers_used=2)
    assert set(port_state_dict(model)) == set(ported)
    assert set(keys.unused_text_keys(original, 3)) == {
        k for k in original if k.startswith(keys.TEXT + "transformer.resblocks.2.")} | {
        keys.TEXT + "text_projection", keys.TEXT + "logit_scale"}
    assert len(model.schedule.scale_arr) == 1400  # mid_step 400 + timesteps 1000, as trained


def test_round_trip_original_to_converted_folder(checkpoint, model, tmp_path):
    folder = convert(checkpoint, tmp_path / "converted")
    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors"]
    assert json.loads((folder / "config.json").read_text())["_class_name"] == "VideoCrafter2"
    again = load_model(str(folder))
    for key, tensor in port_state_dict(model).items():
        assert torch.equal(tensor, port_state_dict(again)[key]), key
    # equal weights; CPU kernels may pick another summation order for other memory alignments
    torch.testing.assert_close(_unet_output(again), _unet_output(model), rtol=0, atol=1e-6)
    torch.testing.assert_close(again.encode(again.tokenize(["a ball"])), model.encode(model.tokenize(["a ball"])),
                               rtol=0, atol=1e-6)


def test_convert_command_in_fp16_keeps_the_schedule_in_fp32(checkpoint, tmp_path, capsys):
    out = tmp_path / "fp16"
    assert main(["convert", "videocrafter2", checkpoint, str(out), "--dtype", "fp16"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    with safe_open(out / "model.safetensors", "pt") as f:
        assert f.get_slice("unet.out.2.weight").get_dtype() == "F16"
        assert f.get_slice("schedule.alphas_cumprod").get_dtype() == "F32"
    loaded = load_model(str(out), dtype=torch.float32)
    assert loaded.schedule.alphas_cumprod.dtype == torch.float32
    assert main(["convert", "videocrafter2", str(tmp_path / "missing.ckpt"), str(tmp_path / "x")]) == 1
    assert "checkpoint not found" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_deepspeed_module_checkpoint_loads(tmp_path, model):
    path = _copy_with(tmp_path, {"_forward_module." + k: v for k, v in original_state_dict().items()},
                      wrap=lambda sd: {"module": sd})
    torch.testing.assert_close(_unet_output(load_model(path)), _unet_output(model), rtol=0, atol=1e-6)


@pytest.mark.parametrize("change, message", [
    (lambda sd: sd.pop("model.diffusion_model.out.2.weight"), r"1 missing key \(unet.out.2.weight\)"),
    (lambda sd: sd.update({"model.diffusion_model.extra.weight": torch.zeros(1)}),
     r"1 unexpected key \(unet.extra.weight\)"),
    (lambda sd: sd.update({"first_stage_model.decoder.conv_in.weight": torch.zeros(1)}),
     r"1 shape mismatch \(vae.decoder.conv_in.weight: checkpoint \[1\]"),
])
def test_strict_loading_names_what_does_not_fit(tmp_path, change, message):
    state_dict = original_state_dict()
    change(state_dict)
    with pytest.raises(VideoModelError, match="model.ckpt does not fit VideoCrafter2: " + message):
        load_model(_copy_with(tmp_path, state_dict))


def test_bad_checkpoints_are_one_clear_error_each(tmp_path, checkpoint):
    truncated = tmp_path / "cut.ckpt"
    data = open(checkpoint, "rb").read()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoModelError, match="cut.ckpt is truncated or damaged"):
        load_model(str(truncated))
    unsafe = tmp_path / "unsafe.ckpt"
    with open(unsafe, "wb") as f:
        pickle.dump({"state_dict": {}, "hook": os.system}, f)
    with pytest.raises(VideoModelError, match="holds objects other than tensors .*weights_only"):
        load_model(str(unsafe))
    sd15 = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3),
            "cond_stage_model.transformer.text_model.final_layer_norm.weight": torch.ones(768),
            "first_stage_model.decoder.conv_in.weight": torch.zeros(512, 4, 3, 3)}
    torch.save({"state_dict": sd15}, tmp_path / "sd15.ckpt")
    with pytest.raises(VideoModelError, match="a Stable Diffusion \\(image\\) checkpoint, not VideoCrafter2"):
        load_model(str(tmp_path / "sd15.ckpt"))
    with pytest.raises(VideoModelError, match="test_videocrafter2.py is not a VideoCrafter2 checkpoint"):
        load_model(__file__)
    with pytest.raises(VideoModelError, match="checkpoint not found"):
        load_backend("videocrafter2", str(tmp_path / "nope.ckpt"), device="cpu")


# --- sampling -----------------------------------------------------------------------------------

def test_ddim_visits_the_original_timesteps():
    assert ddim_timesteps(5, 1000).tolist() == [1, 201, 401, 601, 801]
    assert ddim_timesteps(50, 1000)[-1] == 981
    assert ddim_timesteps(3, 1000).tolist() == [1, 334, 667]  # the original would index 1000 and fail


def test_scale_b_rescales_pred_x0_step_by_step():
    """With eps = 0 and eta = 0 a DDIM step is x · sqrt(a_prev)/sqrt(a_t) · scale_prev/scale_t."""
    schedule = Schedule(DiffusionConfig())
    zero_unet = torch.nn.Linear(1, 1)
    zero_unet.forward = lambda x, t, context, fps: torch.zeros_like(x)
    x = torch.ones(1, 4, 1, 2, 2)
    out = sample(zero_unet, schedule, torch.zeros(1, 1, 1), None, shape=x.shape, steps=2, eta=0.0, latents=x)
    a, s = schedule.alphas_cumprod.double(), schedule.scale_arr.double()
    assert s[501] == pytest.approx(0.7) and s[1] == pytest.approx(1 - 0.3 / 399) and s[0] == 1
    expected = (a[1] / a[501]).sqrt() * s[1] / s[501] * (a[0] / a[1]).sqrt() * s[0] / s[1]
    assert torch.allclose(out, torch.full_like(out, float(expected)), rtol=1e-6)
    without = Schedule(DiffusionConfig(use_scale=False))
    plain = sample(zero_unet, without, torch.zeros(1, 1, 1), None, shape=x.shape, steps=2, eta=0.0, latents=x)
    assert torch.allclose(plain, torch.full_like(out, float((a[0] / a[501]).sqrt())), rtol=1e-6)


def test_sampling_is_replayable_from_latents_and_generator(model):
    context = model.encode(model.tokenize(["a ball"]))
    uncond = model.encode(model.tokenize([""]))
    latents = torch.randn(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(0))

    def run(seed):
        return model.sample(context, uncond, shape=latents.shape, steps=1, latents=latents,
                            generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_tokens_are_open_clips(model):
    tokens = model.tokenize(["Wow! a ball", ""])
    assert tokens.shape == (2, 77)
    assert tokens[0, :3].tolist() == [49406, 2781, 256]  # start, "wow", "!" as OpenCLIP: 256 ("!</w>"), not 0
    assert tokens[0, 5] == 49407 and tokens[0, 6:].eq(0).all() and tokens[1, :3].tolist() == [49406, 49407, 0]


def test_backend_settings_and_budget(checkpoint):
    backend = load_backend("videocrafter2", checkpoint, device="cpu")
    d = backend.defaults
    assert (d.steps, d.guidance, d.fps, d.scheduler) == (50, 12.0, 10.0, "ddim")
    assert (d.width, d.height, d.frames) == (64, 64, 3)  # the tiny model's image_size x 8; the release: 512x320x16
    assert backend.token_limit == 77 and backend.count("a ball") == 4  # start and end tokens count
    with pytest.raises(VideoSettingsError, match="width 72 is not a multiple of 16 .*try 64"):
        backend.settings(SampleRequest(prompt="a ball", width=72))
