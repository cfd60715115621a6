#!/usr/bin/env python
"""VideoCrafter2: the port vs the original lvdm code, same checkpoint, shapes and settings.

The original runs from a checkout of AILab-CVC/VideoCrafter in its own Python environment (torch, einops,
omegaconf, open_clip_torch==2.22 for the text tower's code; the training-only imports pytorch_lightning, kornia
and cv2 are stubbed, they take no part in sampling). It builds the model from a small YAML in the release's
format with random weights, writes `model.ckpt` + `model.yaml`, and times DDIM sampling (guidance 12 against
"", eta 1, fps 28) plus the frame-by-frame decode. The port loads that `model.ckpt` and does the same with the
same latents. Each runs in a fresh process, one untimed warm-up run first; the table shows the best sampling
time and the peak memory while sampling (RSS on CPU, with glibc returning freed blocks so that it follows the
live tensors; torch.cuda.max_memory_allocated on GPU). Target: the port at <= 1.0x on both. Shapes: `small`
(minutes on a CPU) and `real`, the release's (1.4B UNet, 16x320x512; a GPU with 40 GB, and 8 GB of disk for
the fp32 checkpoint). Without xformers installed, the original attends with its own einsum/softmax code.

    python benchmarks/videocrafter2_sampler.py --original-repo /tmp/vc2ref --original-python /tmp/vc2ref/venv/bin/python
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
SHAPES = {  # UNet width, levels, attention heads, VAE and text tower (its OpenCLIP arch); latents (frames, h, w)
    # a text tower OpenCLIP does not ship: the YAML describes it beside the params (text_cfg), which lvdm ignores
    "small": dict(model_channels=64, channel_mult=[1, 2, 2], head_channels=32, vae_ch=32, text_arch="small-text",
                  text_width=128, text_heads=2, text_layers=3, frames=8, latent=(16, 16)),
    # the release (inference_t2v_512_v2.0.yaml, OpenCLIP ViT-H-14's text tower): 16 frames at 320x512
    "real": dict(model_channels=320, channel_mult=[1, 2, 4, 4], head_channels=64, vae_ch=128, text_arch="ViT-H-14",
                 text_width=1024, text_heads=16, text_layers=24, frames=16, latent=(40, 64)),
}
PROMPT = "a red rubber ball falls onto a wooden floor and bounces"


def _yaml(shape: dict) -> dict:
    unet = dict(in_channels=4, out_channels=4, model_channels=shape["model_channels"], attention_resolutions=[4, 2, 1],
                num_res_blocks=2, channel_mult=shape["channel_mult"], num_head_channels=shape["head_channels"],
                transformer_depth=1, context_dim=shape["text_width"], use_linear=True, use_checkpoint=True, temporal_conv=True,
                temporal_attention=True, temporal_selfatt_only=True, use_relative_position=False,
                use_causal_attention=False, temporal_length=shape["frames"], addition_attention=True, fps_cond=True)
    ddconfig = dict(double_z=True, z_channels=4, resolution=512, in_channels=3, out_ch=3, ch=shape["vae_ch"],
                    ch_mult=[1, 2, 4, 4], num_res_blocks=2, attn_resolutions=[], dropout=0.0)
    return {"model": {"target": "lvdm.models.ddpm3d.LatentDiffusion", "params": {
        "linear_start": 0.00085, "linear_end": 0.012, "timesteps": 1000, "conditioning_key": "crossattn",
        "image_size": list(shape["latent"]), "channels": 4, "scale_factor": 0.18215, "use_ema": False,
        "uncond_type": "empty_seq", "use_scale": True, "scale_b": 0.7, "cond_stage_trainable": False,
        "unet_config": {"target": "lvdm.modules.networks.openaimodel3d.UNetModel", "params": unet},
        "first_stage_config": {"target": "lvdm.models.autoencoder.AutoencoderKL", "params": {
            "embed_dim": 4, "ddconfig": ddconfig, "lossconfig": {"target": "torch.nn.Identity"}}},
        "cond_stage_config": {"target": "lvdm.modules.encoders.condition.FrozenOpenCLIPEmbedder",
                              "params": {"arch": shape["text_arch"], "freeze": True, "layer": "penultimate"},
                              "text_cfg": {"width": shape["text_width"], "heads": shape["text_heads"],
                                           "layers": shape["text_layers"]}}}}}


def _original(folder: str, repo: str, shape: dict, steps: int, repeats: int) -> dict:
    """In the original's environment: build, save model.ckpt, sample."""
    import types

    import torch

    sys.path.insert(0, repo)
    lightning = types.ModuleType("pytorch_lightning")  # a base class only (plus .device); no training here
    lightning.LightningModule = type("LightningModule", (torch.nn.Module,), {
        "device": property(lambda self: next(self.parameters()).device)})
    sys.modules.update(pytorch_lightning=lightning, kornia=types.ModuleType("kornia"), cv2=types.ModuleType("cv2"))
    import open_clip
    from omegaconf import OmegaConf
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    # the shape's text tower (as if its arch were registered with OpenCLIP), and a token vision tower (unused)
    open_clip.create_model_and_transforms = lambda *a, **k: (CLIP(
        embed_dim=32, text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=shape["text_width"],
                                           heads=shape["text_heads"], layers=shape["text_layers"]),
        vision_cfg=CLIPVisionCfg(layers=1, width=64, head_width=64, patch_size=8, image_size=16)), None, None)
    from lvdm.models.samplers.ddim import DDIMSampler
    from utils.utils import instantiate_from_config

    DDIMSampler.register_buffer = lambda self, name, value: setattr(self, name, value)  # not forced onto CUDA
    torch.manual_seed(0)
    model = instantiate_from_config(OmegaConf.load(os.path.join(folder, "model.yaml")).model).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    torch.save({"state_dict": model.state_dict()}, os.path.join(folder, "model.ckpt"))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    latents = torch.load(os.path.join(folder, "latents.pt"))

    def run():
        fps = torch.tensor([28], device=device)
        cond = {"c_crossattn": [model.get_learned_conditioning([PROMPT])], "fps": fps}
        uc = {"c_crossattn": [model.get_learned_conditioning([""])], "fps": fps}
        samples, _ = DDIMSampler(model).sample(S=steps, conditioning=cond, batch_size=1, shape=latents.shape[1:],
                                               verbose=False, unconditional_guidance_scale=12.0,
                                               unconditional_conditioning=uc, eta=1.0, x_T=latents.to(device))
        model.decode_first_stage_2DAE(samples)

    return measure(run, repeats)


def _port(folder: str, steps: int, repeats: int) -> dict:
    import torch

    sys.path.insert(0, REPO)
    from phyprompt.video.videocrafter2.model import load_model

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(os.path.join(folder, "model.ckpt"), dtype=torch.float32, device=device)
    latents = torch.load(os.path.join(folder, "latents.pt"))

    def run():
        context, uncond = model.encode(model.tokenize([PROMPT])), model.encode(model.tokenize([""]))
        samples = model.sample(context, uncond, shape=tuple(latents.shape), steps=steps, guidance=12.0, eta=1.0,
                               fps=28, latents=latents, generator=torch.Generator().manual_seed(0))
        model.decode(samples)

    return measure(run, repeats)  # its warm-up also reads the memory-mapped weights in


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--original-repo", required=True, help="a checkout of AILab-CVC/VideoCrafter")
    parser.add_argument("--original-python", required=True, help="the Python of the original's environment")
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        job = json.loads(args.worker)
        result = (_original(job["folder"], args.original_repo, SHAPES[job["shape"]], args.steps, args.repeats)
                  if job["method"] == "original" else _port(job["folder"], args.steps, args.repeats))
        print(json.dumps(result))
        return
    import torch

    rows = []
    for name in args.shapes:
        shape = SHAPES[name]
        with tempfile.TemporaryDirectory() as folder:
            import yaml

            with open(os.path.join(folder, "model.yaml"), "w") as f:
                yaml.safe_dump(_yaml(shape), f)
            torch.save(torch.randn(1, 4, shape["frames"], *shape["latent"], generator=torch.Generator().manual_seed(1)),
                       os.path.join(folder, "latents.pt"))
            results = {}
            for method, python in (("original", args.original_python), ("port", sys.executable)):  # original first: it writes the checkpoint
                job = json.dumps({"method": method, "folder": folder, "shape": name})
                command = [python, os.path.abspath(__file__), "--original-repo", args.original_repo, "--original-python",
                           args.original_python, "--steps", str(args.steps), "--repeats", str(args.repeats),
                           "--worker", job]
                worker = subprocess.run(command, capture_output=True, text=True, env=os.environ | MEASURED_WORKER_ENV)
                if worker.returncode:
                    sys.exit(f"the {method} worker failed:\n{worker.stderr[-3000:]}")
                results[method] = json.loads(worker.stdout.strip().splitlines()[-1])
        rows.append((name, shape, results))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"VideoCrafter2 sampling ({args.steps} DDIM steps, guidance 12, + decode) on {device}, best of {args.repeats}")
    print("peak: the process's memory while sampling; sampling: that peak above the memory before it (the loaded "
          "model and libraries), i.e. what sampling itself takes")
    print(f"{'shape':8} {'latents':>10} {'time s: original':>17} {'port':>6} {'ratio':>6} {'peak MiB: original':>19} "
          f"{'port':>5} {'sampling MiB: original':>23} {'port':>5} {'ratio':>6}")
    for name, shape, r in rows:
        o, p = r["original"], r["port"]
        latents = f"{shape['frames']}x{shape['latent'][0]}x{shape['latent'][1]}"
        print(f"{name:8} {latents:>10} {o['seconds']:17.2f} {p['seconds']:6.2f} {p['seconds'] / o['seconds']:6.2f} "
              f"{o['peak'] / 2**20:19.0f} {p['peak'] / 2**20:5.0f} {o['extra'] / 2**20:23.0f} {p['extra'] / 2**20:5.0f} "
              f"{p['extra'] / o['extra']:6.2f}")


if __name__ == "__main__":
    main()
