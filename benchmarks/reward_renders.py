#!/usr/bin/env python
"""What one reward render costs, for sizing a GRPO run with the video reward (train/README.md).

Builds a CogVideoX pipeline with random weights directly on the device (speed and memory do not depend on the
weights) and renders through the project's backend, as `train.rewards.video` does: one video at a time
(`sample`) and a step's rewrites together (`sample_batch`), at the recipes' official settings and at cheaper
reward-time settings. Prints seconds per video and peak GPU memory.

    python benchmarks/reward_renders.py [--shape 2b|tiny] [--batch 4]

`2b` is CogVideoX-2B (30 layers of 30 heads x 64, T5-XXL text encoder, fp16; a GPU with 40 GB); `tiny` runs
anywhere, to try the script.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPTS = ["a red rubber ball falls onto a wooden floor and bounces, each bounce lower than the last",
           "ice cubes melt in a hot pan and the water hisses into steam",
           "a glass of water tips over and the water spreads across the table",
           "a heavy book slides down a tilted wooden board and stops against a wall"]
SHAPES = {
    "2b": dict(transformer=dict(num_attention_heads=30, attention_head_dim=64, num_layers=30, text_embed_dim=4096,
                                time_embed_dim=512, max_text_seq_length=226),
               vae=dict(block_out_channels=(128, 256, 256, 512), layers_per_block=3, latent_channels=16,
                        norm_num_groups=32),
               text=dict(d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64, feed_forward_proj="gated-gelu"),
               settings={"official": dict(steps=50, frames=49, width=720, height=480),
                         "reward": dict(steps=20, frames=25, width=480, height=320)}),
    "tiny": dict(transformer=dict(num_attention_heads=2, attention_head_dim=8, num_layers=1, text_embed_dim=32,
                                  time_embed_dim=2, max_text_seq_length=226),
                 vae=dict(block_out_channels=(8,) * 4, layers_per_block=1, latent_channels=16, norm_num_groups=2),
                 text=dict(d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4),
                 settings={"official": dict(steps=2, frames=9, width=64, height=64),
                           "reward": dict(steps=2, frames=9, width=32, height=32)}),
}


def build_backend(shape: dict, device, dtype):
    import torch
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    from phyprompt.video.cogvideox import CogVideoXBackend

    torch.manual_seed(0)
    with torch.device(device):
        transformer = CogVideoXTransformer3DModel(in_channels=16, out_channels=16, sample_width=90, sample_height=60,
                                                  sample_frames=49, patch_size=2, temporal_compression_ratio=4,
                                                  **shape["transformer"])
        vae = AutoencoderKLCogVideoX(in_channels=3, out_channels=3, temporal_compression_ratio=4,
                                     down_block_types=("CogVideoXDownBlock3D",) * 4,
                                     up_block_types=("CogVideoXUpBlock3D",) * 4, **shape["vae"])
        tokenizer = T5Tokenizer()  # a small in-memory vocabulary: the encoder's cost is its layers, not its vocabulary
        text_encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), **shape["text"]))
    pipeline = CogVideoXPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                                 scheduler=CogVideoXDDIMScheduler()).to(dtype=dtype)
    pipeline.set_progress_bar_config(disable=True)
    pipeline.vae.enable_slicing()
    pipeline.vae.enable_tiling()
    return CogVideoXBackend(pipeline)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=SHAPES, default="2b")
    parser.add_argument("--batch", type=int, default=4, help="rewrites rendered together (render_batch_size)")
    args = parser.parse_args()
    import torch

    sys.path.insert(0, REPO)
    from phyprompt.video import SampleRequest

    cuda = torch.cuda.is_available()
    device, dtype = ("cuda", torch.float16) if cuda else ("cpu", torch.float32)
    shape = SHAPES[args.shape]
    backend = build_backend(shape, device, dtype)
    prompts = (PROMPTS * args.batch)[:args.batch]

    def timed(run):
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        run()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start, (torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan"))

    warm = dict(shape["settings"]["reward"], steps=1)
    backend.sample(SampleRequest(prompt=PROMPTS[0], **warm))
    rows = []
    for name, settings in shape["settings"].items():
        requests = [SampleRequest(prompt=p, seed=i, **settings) for i, p in enumerate(prompts)]
        seconds, memory = timed(lambda: backend.sample(requests[0]))
        rows.append((name, settings, 1, seconds, memory))
        if name == "reward":
            seconds, memory = timed(lambda: backend.sample_batch(requests))
            rows.append((name, settings, args.batch, seconds / args.batch, memory))
    print(f"CogVideoX ({args.shape}, random weights) through the project's backend on {device}, {dtype}")
    print(f"{'settings':9} {'steps':>5} {'frames':>6} {'size':>8} {'batch':>5} {'s/video':>8} {'peak GiB':>9}")
    for name, s, batch, seconds, memory in rows:
        print(f"{name:9} {s['steps']:5} {s['frames']:6} {s['width']}x{s['height']:<4} {batch:5} {seconds:8.2f} "
              f"{memory:9.1f}")


if __name__ == "__main__":
    main()
