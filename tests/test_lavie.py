"""LaVie's own checks: strict loading of lavie_base.pt and the Stable Diffusion 1.4 folder, the temporal
attention (rotary embedding, relative position bias), the GroupNorms that see the whole video, the DDPM
schedule, replayable sampling and the safetensors converter. The backend contract tests
(tests/test_video_backends.py) run on LaVie too; numerical parity with the original code is checked outside
the suite (see the report of issue 14)."""

import json
import math
import re
import shutil

import pytest
import torch

from phyprompt.infra.checkpoints import CheckpointMismatchError, ModelFolderError
from phyprompt.video import SampleRequest, VideoModelError, VideoSettingsError, backend_info, load_backend
from phyprompt.video.lavie import sampling
from phyprompt.video.lavie.backend import LaVieBackend
from phyprompt.video.lavie.config import UNetConfig
from phyprompt.video.lavie.loading import convert
from phyprompt.video.lavie.temporal import RelativePositionBias, RotaryEmbedding, TemporalAttention
from phyprompt.video.lavie.unet import LaVieUNet
from support.tiny_lavie import SETTINGS as SMALL
from support.tiny_lavie import UNET_CONFIG, build_unet, write_checkpoint, write_sd_folder


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("lavie")
    return {"plain": write_checkpoint(root / "lavie_base.pt"), "ema": write_checkpoint(root / "ema" / "lavie_base.pt",
                                                                                        seed=1, ema=True),
            "sd": write_sd_folder(root / "stable-diffusion-v1-4"), "root": root}


@pytest.fixture(scope="module")
def lavie(files):
    return load_backend("lavie", files["plain"], device="cpu", sd_folder=files["sd"])


def request(**overrides) -> SampleRequest:
    return SampleRequest(**({"prompt": "a red ball falls onto the floor", "seed": 5} | SMALL | overrides))


# --- loading ------------------------------------------------------------------------------------

def test_the_description_names_the_release_and_the_official_settings():
    info = backend_info("lavie")
    assert (info.node_name, info.target, info.fps, info.schedulers) == ("LaVie", "lavie", 8.0, ("ddpm",))
    assert info.official() == "50 steps, guidance 7.5, 16 frames, 512x320"
    assert [c.name for c in info.components] == ["sd_folder"]
    assert info.components[0].weights.pipeline_class == "StableDiffusionPipeline"
    assert info.converter == "lavie.loading:convert" and info.load_keywords == ("ema", "sd_folder")


def test_ema_weights_are_chosen_as_the_original_chooses(files):
    assert load_backend("lavie", files["plain"], device="cpu", sd_folder=files["sd"]).weights == "plain"
    ema = load_backend("lavie", files["ema"], device="cpu", sd_folder=files["sd"])
    assert ema.weights == "ema"
    with pytest.raises(VideoModelError, match="has no plain weights at its top level.*EMA option on"):
        load_backend("lavie", files["ema"], device="cpu", sd_folder=files["sd"], ema=False)


def _save_changed(files, path, change):
    state_dict = torch.load(files["plain"], weights_only=True)
    change(state_dict)
    torch.save(state_dict, path)
    return str(path)


@pytest.mark.parametrize("change, message", [
    (lambda sd: sd.pop("mid_block.attentions.0.transformer_blocks.0.attn_temp.to_q.weight"),
     r"lavie_base.pt does not fit the LaVie UNet built from .*unet/config.json \(is it Stable Diffusion 1.4\?\): "
     r"1 missing key \(mid_block.attentions.0.transformer_blocks.0.attn_temp.to_q.weight\)"),
    (lambda sd: sd.update({"time_rel_pos_bias.relative_attention_bias.weight": torch.zeros(32, 8)}),
     r"1 unexpected key \(time_rel_pos_bias.relative_attention_bias.weight\)"),
    (lambda sd: sd.update({"conv_in.weight": torch.zeros(32, 9, 3, 3)}),
     r"1 shape mismatch \(conv_in.weight: checkpoint \[32, 9, 3, 3\] vs model \[32, 4, 3, 3\]\)"),
])
def test_a_checkpoint_that_does_not_fit_is_refused_by_name(files, tmp_path, change, message):
    path = _save_changed(files, tmp_path / "lavie_base.pt", change)
    with pytest.raises(CheckpointMismatchError, match=message):
        load_backend("lavie", path, device="cpu", sd_folder=files["sd"])


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
def test_a_stable_diffusion_checkpoint_is_not_lavie(files, tmp_path, prefix):
    """SD's UNet (diffusers names) or an SD single-file checkpoint passed where lavie_base.pt belongs."""
    spatial = {prefix + k: v for k, v in torch.load(files["plain"], weights_only=True).items() if "_temp" not in k}
    torch.save(spatial, tmp_path / "v1-4.ckpt")
    with pytest.raises(VideoModelError, match="no temporal attention layers.*Stable Diffusion image checkpoint"):
        load_backend("lavie", str(tmp_path / "v1-4.ckpt"), device="cpu", sd_folder=files["sd"])


def test_a_videocrafter2_checkpoint_is_named_as_such(files, tmp_path):
    """VideoCrafter2's model.ckpt has no attn_temp either, but it is no image checkpoint: say what it is."""
    from support.tiny_videocrafter2 import write_tiny_videocrafter2

    path = write_tiny_videocrafter2(tmp_path / "model.ckpt")
    with pytest.raises(VideoModelError) as error:
        load_backend("lavie", path, device="cpu", sd_folder=files["sd"])
    assert str(error.value) == ("model.ckpt is a VideoCrafter2 checkpoint (text-to-video, with an OpenCLIP text "
                                "encoder), not LaVie's lavie_base.pt (YaohuiW/LaVie): load it with the videocrafter2 "
                                "backend")


def test_a_file_without_a_unet_is_not_called_stable_diffusion(files, tmp_path):
    torch.save({"text_model.embeddings.token_embedding.weight": torch.zeros(8, 4)}, tmp_path / "encoder.pt")
    with pytest.raises(VideoModelError) as error:
        load_backend("lavie", str(tmp_path / "encoder.pt"), device="cpu", sd_folder=files["sd"])
    assert str(error.value) == ("encoder.pt has no temporal attention layers (attn_temp), so it is not LaVie's "
                                "lavie_base.pt (YaohuiW/LaVie)")


def _sd_copy(files, tmp_path, edit=None, remove=None):
    folder = tmp_path / "sd"
    shutil.copytree(files["sd"], folder)
    if remove:
        target = folder / remove
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    if edit:
        name, changes = edit
        data = json.loads((folder / name).read_text())
        (folder / name).write_text(json.dumps(data | changes))
    return str(folder)


@pytest.mark.parametrize("remove, edit, message", [
    ("model_index.json", None, "no model_index.json"),
    (None, ("model_index.json", {"_class_name": "CogVideoXPipeline"}),
     "holds a CogVideoXPipeline, not a StableDiffusionPipeline; LaVie needs CompVis/stable-diffusion-v1-4"),
    ("vae/diffusion_pytorch_model.safetensors", None, "holds no weights"),
    ("text_encoder", None, "Stable Diffusion text_encoder folder not found"),
    ("tokenizer", None, "the tokenizer/ folder is missing"),
    ("unet/config.json", None, "has no unet/config.json; LaVie builds its UNet from it"),
    (None, ("unet/config.json", {"use_linear_projection": True, "attention_head_dim": [1, 2]}),
     "is not a Stable Diffusion 1.x UNet config \\(use_linear_projection is True, SD1.x has False\\)"),
    (None, ("unet/config.json", {"up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"]}),
     "up_block_types do not mirror down_block_types"),
    (None, ("unet/config.json", {"cross_attention_dim": 48}),
     r"\(is it Stable Diffusion 1.4\?\): 8 shape mismatches \(down_blocks.0.attentions.0.transformer_blocks.0.attn2"),
])
def test_a_wrong_stable_diffusion_folder_is_named(files, tmp_path, remove, edit, message):
    folder = _sd_copy(files, tmp_path, edit, remove)
    with pytest.raises(ModelFolderError, match=message):
        load_backend("lavie", files["plain"], device="cpu", sd_folder=folder)


def test_the_stable_diffusion_folder_is_required(files):
    with pytest.raises(VideoModelError, match="LaVie needs a Stable Diffusion 1.4 folder .*--sd-folder"):
        load_backend("lavie", files["plain"], device="cpu")
    with pytest.raises(VideoModelError, match="checkpoint not found"):
        load_backend("lavie", str(files["root"] / "nope.pt"), device="cpu", sd_folder=files["sd"])
    with pytest.raises(VideoModelError, match="--sd-folder"):
        LaVieBackend.load_token_counter(files["plain"])


def test_the_converted_file_loads_the_same_model(files, tmp_path, lavie):
    ema = load_backend("lavie", files["ema"], device="cpu", sd_folder=files["sd"])
    out = convert(files["ema"], tmp_path)
    assert out == tmp_path / "lavie_base.safetensors"
    converted = load_backend("lavie", str(out), device="cpu", sd_folder=files["sd"])
    assert all(torch.equal(a, b) for a, b in zip(ema.unet.state_dict().values(), converted.unet.state_dict().values()))
    half = convert(files["plain"], tmp_path / "half.safetensors", dtype="fp16")
    from safetensors.torch import load_file

    assert {t.dtype for t in load_file(half).values()} == {torch.float16}


# --- the temporal attention ---------------------------------------------------------------------

def test_rotary_embedding_turns_pairs_of_the_first_32_channels_by_frame():
    rotary = RotaryEmbedding()
    x = torch.randn(2, 6, 48)
    out = rotary(x)
    assert torch.equal(out[..., 32:], x[..., 32:]) and torch.allclose(out[:, 0], x[:, 0])
    for frame in range(6):
        for pair in range(16):
            angle = frame * 10_000 ** (-2 * pair / 32)
            a, b = x[:, frame, 2 * pair], x[:, frame, 2 * pair + 1]
            cos, sin = math.cos(angle), math.sin(angle)
            expected = torch.stack([a * cos - b * sin, a * sin + b * cos])
            assert torch.allclose(out[:, frame, 2 * pair:2 * pair + 2].T, expected, atol=1e-5)
    # what makes it relative: a query and a key turned by their frames meet at an angle of their distance
    q, k = torch.randn(32), torch.randn(32)
    turned = lambda v, at: rotary(v.expand(8, 32).clone())[at]  # noqa: E731
    assert torch.allclose(turned(q, 5) @ turned(k, 3), turned(q, 4) @ turned(k, 2), atol=1e-5)


def test_relative_position_bias_buckets_like_t5():
    bias = RelativePositionBias(heads=2)
    buckets = bias.bucket(40)
    # query i, key j: offsets i - j below 8 are exact, then logarithmic to 32, past keys 0-15, future ones 16-31
    assert [buckets[i, 0].item() for i in (0, 1, 7, 8, 11, 16, 31, 32, 39)] == [0, 1, 7, 8, 9, 12, 15, 15, 15]
    assert [buckets[0, j].item() for j in (1, 7, 8, 16, 39)] == [17, 23, 24, 28, 31]
    assert torch.equal(buckets[3:, 3:], buckets[:-3, :-3])  # depends on the offset only
    values = bias(5)
    assert values.shape == (2, 5, 5)
    assert torch.equal(values[:, 4, 1], bias.relative_attention_bias.weight[3])


def test_temporal_attention_is_softmax_attention_with_rotary_and_bias():
    torch.manual_seed(0)
    attention = TemporalAttention(channels=64, heads=2, head_channels=40)
    torch.nn.init.normal_(attention.time_rel_pos_bias.relative_attention_bias.weight)
    x = torch.randn(3, 7, 64)
    heads = lambda t: t.view(3, 7, 2, 40).transpose(1, 2)  # noqa: E731
    q, k, v = (heads(p(x)) for p in (attention.to_q, attention.to_k, attention.to_v))
    q, k = attention.rotary_emb(q), attention.rotary_emb(k)
    logits = q @ k.transpose(-1, -2) / math.sqrt(40) + attention.time_rel_pos_bias(7)
    expected = attention.to_out[0]((logits.softmax(-1) @ v).transpose(1, 2).reshape(3, 7, 80))
    assert torch.allclose(attention(x), expected, atol=1e-5)
    # frames are positions, not a set: reversing them does not just reverse the output
    assert not torch.allclose(attention(x.flip(1)).flip(1), attention(x), atol=1e-3)


# --- the UNet -----------------------------------------------------------------------------------

def test_resnet_and_output_groupnorms_see_the_whole_video_the_transformers_one_frame():
    unet = build_unet()
    seen = {}
    for name, module in unet.named_modules():
        if isinstance(module, torch.nn.GroupNorm):
            module.register_forward_pre_hook(lambda m, args, name=name: seen.update({name: args[0].shape}))
    b, f, h, w = 2, 3, 8, 8
    unet(torch.randn(b, 4, f, h, w), 10, torch.randn(b, 77, 32))
    for name, shape in seen.items():
        if name.endswith(("norm1", "norm2")) or name == "conv_norm_out":
            assert len(shape) == 5 and shape[0] == b and shape[2] == f, name
        else:
            assert re.search(r"attentions\.\d+\.norm$", name) and len(shape) == 4 and shape[0] == b * f, name
    assert "conv_norm_out" in seen and "down_blocks.0.attentions.0.norm" in seen


def test_the_joint_groupnorm_makes_frames_depend_on_each_other():
    """A ResNet block alone (no attention): with statistics over the whole video, brightening one frame
    changes the others; a 2-D UNet run frame by frame would leave them as they were."""
    resnet = build_unet().down_blocks[1].resnets[0]
    video, embedding = torch.randn(1, 32, 4, 6, 6), torch.randn(1, 128)
    brighter = video.clone()
    brighter[:, :, 0] *= 3
    assert not torch.allclose(resnet(video, embedding)[:, :, 1:], resnet(brighter, embedding)[:, :, 1:], atol=1e-4)
    frames = torch.cat([resnet(video[:, :, i:i + 1], embedding) for i in range(4)], dim=2)
    assert not torch.allclose(frames, resnet(video, embedding), atol=1e-4)


def test_uneven_latent_sizes_keep_their_shape():
    unet = build_unet()
    for h, w in ((9, 7), (6, 10)):
        assert unet(torch.randn(1, 4, 2, h, w), 500, torch.randn(1, 77, 32)).shape == (1, 4, 2, h, w)


# --- sampling -----------------------------------------------------------------------------------

def test_the_schedule_is_the_originals():
    assert sampling.timesteps(50) == list(range(980, -1, -20))  # steps_offset ignored, as diffusers 0.16 did
    assert sampling.timesteps(4) == [750, 500, 250, 0]
    scheduler = sampling.ddpm_scheduler()
    assert torch.allclose(scheduler.betas, torch.linspace(1e-4, 0.02, 1000))
    assert not scheduler.config.clip_sample and scheduler.config.variance_type == "fixed_small"


def test_sampling_replays_from_latents_and_generator(lavie):
    video = lavie.sample(request())
    generator = torch.Generator().manual_seed(5)
    context = sampling.encode_prompts(lavie.tokenizer, lavie.text_encoder, ["", request().prompt])
    latents = torch.randn(1, 4, 3, 8, 8, generator=generator)  # the tiny VAE halves the size
    latents = sampling.denoise(lavie.unet, context, latents, steps=2, guidance=7.5, generator=generator)
    assert torch.equal(sampling.decode(lavie.vae, latents), video.frames)


def test_guidance_one_runs_the_prompt_alone(lavie):
    batches = []
    hook = lavie.unet.register_forward_hook(lambda m, args, out: batches.append(args[0].shape[0]))
    try:
        lavie.sample(request(guidance=1.0))
        lavie.sample(request(guidance=2.0))
    finally:
        hook.remove()
    assert batches == [1, 1, 2, 2]


def test_negative_prompt_changes_the_video(lavie):
    assert not torch.equal(lavie.sample(request()).frames, lavie.sample(request(negative_prompt="blurry")).frames)


@pytest.mark.parametrize("overrides, message", [
    (dict(width=20), "width 20 is not a multiple of 8; try 24"),
    (dict(height=4), "height must be at least 8, not 4"),
    (dict(steps=1001), "steps must be at most 1000"),
    (dict(scheduler="ddim"), "unknown scheduler 'ddim'; choose one of: ddpm"),
])
def test_settings_it_cannot_render(lavie, overrides, message):
    with pytest.raises(VideoSettingsError, match=message):
        lavie.sample(request(**overrides))


def test_config_is_read_from_the_stable_diffusion_unet_config(files):
    config = UNetConfig.read(files["sd"])
    assert config == UNetConfig.from_sd(UNET_CONFIG)
    assert (config.block_out_channels, config.cross_attention, config.heads) == ((32, 64), (True, False), (1, 1))
    assert UNetConfig() == UNetConfig.from_sd({  # CompVis/stable-diffusion-v1-4's unet/config.json
        "act_fn": "silu", "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280],
        "center_input_sample": False, "cross_attention_dim": 768,
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"], "downsample_padding": 1,
        "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2, "mid_block_scale_factor": 1,
        "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3})


def test_spatial_weights_keep_diffusers_names_and_shapes():
    """SD1.4's UNet2DConditionModel, key for key, plus 9 temporal tensors in each of its 16 transformer blocks."""
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        ours = {k: v.shape for k, v in LaVieUNet(UNetConfig()).state_dict().items()}
        theirs = {k: v.shape for k, v in UNet2DConditionModel(cross_attention_dim=768).state_dict().items()}
    temporal = {k for k in ours if ".attn_temp." in k or ".norm_temp." in k}
    assert {k: v for k, v in ours.items() if k not in temporal} == theirs
    assert len(temporal) == 16 * 9
