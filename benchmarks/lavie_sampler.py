#!/usr/bin/env python
"""LaVie: the port vs the original `base/` code, same weights, latents, shapes and settings.

The original runs from a copy of Vchitect/LaVie's `base/` folder in its own Python environment (the versions
it pins: diffusers 0.16, transformers 4.28, einops, rotary-embedding-torch 0.2.x). It builds its
UNet3DConditionModel from a Stable Diffusion 1.x style unet/config.json at reduced widths, with random weights,
writes `lavie_base.pt`, and times its VideoGenPipeline (DDPM, guidance 7.5 against "", decode) from given
latents. The port loads that `lavie_base.pt` with the same SD folder and runs the same steps. Each runs in a
fresh process; the table shows the best time of `--repeats` and the memory sampling takes on top of the loaded
model (peak RSS minus RSS before, polled every 2 ms; torch.cuda.max_memory_allocated on a GPU). Target: the
port at <= 1.0x on both.

    python benchmarks/lavie_sampler.py --original-base /tmp/lavieref/base \
        --original-python /tmp/lavieref/venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from peak_memory import MEASURED_WORKER_ENV, measure  # benchmarks/peak_memory.py (this folder is on sys.path)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = {  # SD1.4's UNet scaled down (widths, levels); latents (frames, h, w)
    "small": dict(block_out_channels=[64, 128, 128], attention_head_dim=2, layers_per_block=2, frames=8,
                  latent=(16, 24)),
    "frames16": dict(block_out_channels=[64, 128, 128], attention_head_dim=2, layers_per_block=2, frames=16,
                     latent=(20, 32)),
}
PROMPT = "a red rubber ball falls onto a wooden floor and bounces"
GUIDANCE = 7.5
MAP_3D = {"CrossAttnDownBlock2D": "CrossAttnDownBlock3D", "DownBlock2D": "DownBlock3D",
          "CrossAttnUpBlock2D": "CrossAttnUpBlock3D", "UpBlock2D": "UpBlock3D"}


def _original(folder: str, base: str, steps: int, repeats: int) -> dict:
    """In the original's environment: build the UNet with random weights, save lavie_base.pt, sample."""
    import torch

    sys.path[:0] = [base, os.path.join(base, "pipelines")]
    from diffusers import AutoencoderKL, DDPMScheduler
    from models.unet import UNet3DConditionModel
    from pipeline_videogen import VideoGenPipeline
    from safetensors.torch import load_file
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    sd = os.path.join(folder, "sd")
    with open(os.path.join(sd, "unet", "config.json")) as f:  # what from_pretrained_2d builds, without SD's weights
        config = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
    config.update(down_block_types=[MAP_3D[t] for t in config["down_block_types"]],
                  up_block_types=[MAP_3D[t] for t in config["up_block_types"]], use_first_frame=False)
    torch.manual_seed(0)
    unet = UNet3DConditionModel.from_config(config).eval()
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if not name.endswith("freqs"):
                p.normal_(0, 0.05)
    torch.save(unet.state_dict(), os.path.join(folder, "lavie_base.pt"))
    # today's diffusers/transformers wrote the SD folder; these versions name the VAE's attention and CLIP's
    # tensors differently, so the same tensors are loaded by hand
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(os.path.join(sd, "vae"))).eval()
    renames = {"to_q.": "query.", "to_k.": "key.", "to_v.": "value.", "to_out.0.": "proj_attn."}
    weights = {}
    for key, value in load_file(os.path.join(sd, "vae", "diffusion_pytorch_model.safetensors")).items():
        for new, old in renames.items():
            key = key.replace(f"attentions.0.{new}", f"attentions.0.{old}")
        weights[key] = value
    vae.load_state_dict(weights)
    text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(os.path.join(sd, "text_encoder"))).eval()
    weights = load_file(os.path.join(sd, "text_encoder", "model.safetensors"))
    text_encoder.load_state_dict({k if k.startswith("text_model.") else "text_model." + k: v
                                  for k, v in weights.items()}, strict=False)
    scheduler = DDPMScheduler.from_pretrained(sd, subfolder="scheduler", beta_start=0.0001, beta_end=0.02,
                                              beta_schedule="linear")
    pipeline = VideoGenPipeline(vae=vae, text_encoder=text_encoder, scheduler=scheduler, unet=unet,
                                tokenizer=CLIPTokenizer.from_pretrained(sd, subfolder="tokenizer"))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)
    latents = torch.load(os.path.join(folder, "latents.pt")).to(device)
    _, _, frames, h, w = latents.shape
    return measure(lambda: pipeline(PROMPT, video_length=frames, height=h * 2, width=w * 2, num_inference_steps=steps,
                                   guidance_scale=GUIDANCE, latents=latents), repeats)


def _port(folder: str, steps: int, repeats: int) -> dict:
    import torch

    sys.path.insert(0, REPO)
    from phyprompt.video import load_backend
    from phyprompt.video.lavie import sampling

    device = "cuda" if torch.cuda.is_available() else "cpu"
    lavie = load_backend("lavie", os.path.join(folder, "lavie_base.pt"), device=device, dtype="fp32",
                         sd_folder=os.path.join(folder, "sd"))
    latents = torch.load(os.path.join(folder, "latents.pt")).to(device)

    def run():
        context = sampling.encode_prompts(lavie.tokenizer, lavie.text_encoder, ["", PROMPT])
        samples = sampling.denoise(lavie.unet, context, latents, steps=steps, guidance=GUIDANCE,
                                   generator=torch.Generator().manual_seed(0))
        sampling.decode(lavie.vae, samples)

    return measure(run, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--original-base", required=True, help="the base/ folder of a copy of Vchitect/LaVie")
    parser.add_argument("--original-python", required=True, help="the Python of the original's environment")
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        job = json.loads(args.worker)
        result = (_original(job["folder"], args.original_base, args.steps, args.repeats)
                  if job["method"] == "original" else _port(job["folder"], args.steps, args.repeats))
        print(json.dumps(result))
        return
    import torch

    sys.path[:0] = [REPO, os.path.join(REPO, "tests")]
    from support.tiny_lavie import UNET_CONFIG, write_sd_folder

    rows = []
    for name in args.shapes:
        shape = SHAPES[name]
        with tempfile.TemporaryDirectory() as folder:
            sd = write_sd_folder(os.path.join(folder, "sd"))
            attention_levels = len(shape["block_out_channels"]) - 1  # SD's layout: all but the deepest level
            config = dict(UNET_CONFIG, block_out_channels=shape["block_out_channels"],
                          attention_head_dim=shape["attention_head_dim"], layers_per_block=shape["layers_per_block"],
                          down_block_types=["CrossAttnDownBlock2D"] * attention_levels + ["DownBlock2D"],
                          up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * attention_levels)
            with open(os.path.join(sd, "unet", "config.json"), "w") as f:
                json.dump(config, f)
            latents = torch.randn(1, 4, shape["frames"], *shape["latent"], generator=torch.Generator().manual_seed(1))
            torch.save(latents, os.path.join(folder, "latents.pt"))
            results = {}
            # the original first: it writes the checkpoint
            for method, python in (("original", args.original_python), ("port", sys.executable)):
                job = json.dumps({"method": method, "folder": folder})
                command = [python, os.path.abspath(__file__), "--original-base", args.original_base,
                           "--original-python", args.original_python, "--steps", str(args.steps),
                           "--repeats", str(args.repeats), "--worker", job]
                output = subprocess.run(command, check=True, capture_output=True, text=True,
                                        env=os.environ | MEASURED_WORKER_ENV).stdout
                results[method] = json.loads(output.strip().splitlines()[-1])
        rows.append((name, shape, results))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"LaVie sampling ({args.steps} DDPM steps, guidance {GUIDANCE:g}, + decode) on {device}, "
          f"best of {args.repeats}")
    print(f"{'shape':9} {'latents':>10} {'original s':>11} {'port s':>8} {'ratio':>6} {'original MiB':>13} "
          f"{'port MiB':>9} {'ratio':>6}")
    for name, shape, r in rows:
        o, p = r["original"], r["port"]
        latents = f"{shape['frames']}x{shape['latent'][0]}x{shape['latent'][1]}"
        print(f"{name:9} {latents:>10} {o['seconds']:11.2f} {p['seconds']:8.2f} {p['seconds'] / o['seconds']:6.2f} "
              f"{o['extra'] / 2**20:13.0f} {p['extra'] / 2**20:9.0f} {p['extra'] / o['extra']:6.2f}")


if __name__ == "__main__":
    main()
