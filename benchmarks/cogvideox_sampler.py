#!/usr/bin/env python
"""CogVideoX: the project's backend vs a bare diffusers CogVideoXPipeline, same shapes and settings.

For each shape, renders the same prompt with the same seed, scheduler (DPM, dynamic CFG), steps and size
through `phyprompt.video.load_backend("cogvideox", …).sample(…)` (with a progress callback, as the
nodes and CLI use it) and through `CogVideoXPipeline.from_pretrained(…)(…)` directly, each method in its
own fresh process so peak memory is its own, and prints a table of sampling time and peak memory (peak
RSS on CPU, `torch.cuda.max_memory_allocated` on GPU). Target: the project at ≤ 1.0× bare diffusers on
both. Weights are random (speed and memory do not depend on them); shapes are built with the tiny
CogVideoX builder of the tests at larger widths.

    python benchmarks/cogvideox_sampler.py [--shapes tiny small] [--steps 4] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# transformer/VAE/text widths; the real 2B is 30 heads x 64 dims, 30 layers, VAE (128, 256, 256, 512)
SHAPES = {
    "tiny": dict(model=dict(), frames=9, width=32, height=32),
    "small": dict(model=dict(heads=8, head_dim=32, layers=4, vae_channels=32, text_dim=64), frames=17, width=96,
                  height=64),
}
PROMPT = "a red rubber ball falls onto a wooden floor and bounces, each bounce lower than the last"


def _worker(method: str, folder: str, settings: dict, steps: int, repeats: int) -> dict:
    """Runs in a fresh process: load with `method`, sample `repeats` times, report the best time."""
    import resource

    import torch

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    request = dict(num_frames=settings["frames"], width=settings["width"], height=settings["height"],
                   num_inference_steps=steps, guidance_scale=6.0)
    if method == "phyprompt":
        from phyprompt.video import SampleRequest, load_backend

        backend = load_backend("cogvideox", folder, device=device)

        def render(seed):
            backend.sample(SampleRequest(prompt=PROMPT, seed=seed, steps=steps, guidance=6.0,
                                         frames=settings["frames"], width=settings["width"],
                                         height=settings["height"], scheduler="dpm"),
                           progress=lambda done, total: None)
    else:
        from diffusers import CogVideoXDPMScheduler, CogVideoXPipeline

        dtype = torch.float32 if not cuda else torch.float16
        pipe = CogVideoXPipeline.from_pretrained(folder, torch_dtype=dtype, local_files_only=True).to(device)
        pipe.scheduler = CogVideoXDPMScheduler.from_config(pipe.scheduler.config)
        pipe.vae.enable_slicing()
        pipe.vae.enable_tiling()
        pipe.set_progress_bar_config(disable=True)

        def render(seed):
            pipe(prompt=PROMPT, use_dynamic_cfg=True, generator=torch.Generator("cpu").manual_seed(seed),
                 output_type="np", max_sequence_length=pipe.transformer.config.max_text_seq_length, **request)
    render(seed=99)  # warm-up: first-call allocations and kernel selection are not the sampler's speed
    times = []
    for seed in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        render(seed)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated() if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"seconds": min(times), "peak_mb": peak / 2**20, "device": device}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--worker", nargs=4, metavar=("METHOD", "FOLDER", "SHAPE", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        method, folder, shape, steps = args.worker
        print(json.dumps(_worker(method, folder, SHAPES[shape], int(steps), args.repeats)))
        return

    sys.path[:0] = [REPO, os.path.join(REPO, "tests")]
    from support.tiny_cogvideox import write_tiny_cogvideox

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for shape in args.shapes:
            folder = write_tiny_cogvideox(os.path.join(scratch, shape), **SHAPES[shape]["model"])
            results = {}
            for method in ("diffusers", "phyprompt"):
                run = subprocess.run(
                    [sys.executable, __file__, "--repeats", str(args.repeats), "--worker", method, folder, shape,
                     str(args.steps)],
                    capture_output=True, text=True, check=True, cwd=REPO,
                    env=os.environ | {"PYTHONPATH": REPO})
                results[method] = json.loads(run.stdout.strip().splitlines()[-1])
            rows.append((shape, results))

    s = SHAPES
    header = (f"{'shape':<7} {'frames x size':<14} {'device':<6} {'bare s':>8} {'ours s':>8} {'time x':>7} "
              f"{'bare MB':>8} {'ours MB':>8} {'mem x':>6}")
    print(f"{args.steps} DPM steps, guidance 6, best of {args.repeats}; peak = "
          f"{'CUDA max allocated' if rows and rows[0][1]['diffusers']['device'] == 'cuda' else 'process peak RSS'}")
    print(header)
    print("-" * len(header))
    for shape, r in rows:
        bare, ours = r["diffusers"], r["phyprompt"]
        size = f"{s[shape]['frames']}x{s[shape]['width']}x{s[shape]['height']}"
        print(f"{shape:<7} {size:<14} {bare['device']:<6} {bare['seconds']:>8.2f} {ours['seconds']:>8.2f} "
              f"{ours['seconds'] / bare['seconds']:>6.2f}x {bare['peak_mb']:>8.0f} {ours['peak_mb']:>8.0f} "
              f"{ours['peak_mb'] / bare['peak_mb']:>5.2f}x")


if __name__ == "__main__":
    main()
