#!/usr/bin/env python
"""VideoPhy-2 AutoEval port: videos/s and peak memory with and without shared video encoding.

Judges the same videos (SA + PC + `--rules` rule questions each) with the port's `AutoEvalJudge`, once
encoding each video once for all its prompts (the default) and once encoding it again for every prompt (what
the reference does), each mode in its own fresh process so peak memory is its own (peak RSS on CPU,
`torch.cuda.max_memory_allocated` during judging on GPU). Weights are random (speed and memory do not depend
on them), built in memory; answers are held to one token and </s> (`max_length=3`) as the real judge's
are, since random weights never stop talking. `--shape small` is a CPU-sized model (vision 256 wide, 257
tokens a frame as released); `--shape real` is the released sizes (ViT-L/14, 6-layer abstractor, LLaMA-7B)
and wants a GPU with ~16 GB.

    python benchmarks/judge_autoeval.py [--shape small|real] [--videos 4] [--batch-size 2] [--rules 1]
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
sys.path[:0] = [REPO, os.path.join(REPO, "tests")]

SHAPES = {
    "small": dict(vision=dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=2, num_attention_heads=4,
                              patch_size=14),
                  abstractor=dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=2,
                                  num_attention_heads=4, encoder_hidden_size=256),
                  text=dict(hidden_size=256, intermediate_size=688, num_hidden_layers=2, num_attention_heads=4)),
    "real": dict(vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                             patch_size=14),
                 abstractor=dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=6,
                                 num_attention_heads=16, encoder_hidden_size=1024),
                 # LLaMA-7B's layers; the vocabulary stays the test tokenizer's (32000 rows would let random
                 # weights pick ids the tokenizer cannot decode; the head is 2% of the model's work)
                 text=dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32)),
}
CAPTION = "a red rubber ball falls onto a wooden floor and bounces, each bounce lower than the last"


def config_for(shape: str) -> dict:
    from support.tiny_autoeval import tiny_config

    config = tiny_config(patch_size=SHAPES[shape]["vision"]["patch_size"])
    for part, key in (("vision", "vision_config"), ("abstractor", "visual_abstractor_config"), ("text", "text_config")):
        config[key].update(SHAPES[shape][part])
    return config


def _worker(shape: str, shared: bool, tokenizer_file: str, videos: int, batch_size: int, rules: int) -> dict:
    """Runs in a fresh process: build the judge with random weights, judge, report time and peak memory."""
    import resource

    import numpy as np
    import torch

    from phyprompt.judges.videophy2.config import AutoEvalConfig
    from phyprompt.judges.videophy2.judge import AutoEvalJudge
    from phyprompt.judges.videophy2.model import AutoEvalModel
    from phyprompt.judges.videophy2.tokenizer import PromptTokenizer

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    torch.manual_seed(0)
    with torch.device("meta"):
        model = AutoEvalModel(AutoEvalConfig.from_dict(config_for(shape)))
    model.to_empty(device=device)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0, 0.02)
    model.language_model.model.rotary_emb = type(model.language_model.model.rotary_emb)(
        config=model.language_model.config).to(device)
    model.to(dtype).eval().requires_grad_(False)
    judge = AutoEvalJudge(model, PromptTokenizer(tokenizer_file), share_video_encoding=shared, max_length=3)

    clips = [np.random.default_rng(i).integers(0, 256, (48, 240, 320, 3), dtype=np.uint8) for i in range(videos)]
    captions = [CAPTION] * videos
    rule_lists = [["the ball accelerates downward while falling"] * rules] * videos
    judge.judge(clips[:1], captions[:1], rules=rule_lists[:1])  # warm-up
    before = _rss_mb()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    judge.judge(clips, captions, rules=rule_lists, batch_size=batch_size)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return dict(seconds=seconds, peak_mb=peak, before_mb=0.0 if cuda else before, device=str(device),
                prompts=videos * (2 + rules))


def _rss_mb() -> float:
    """The process's resident memory now (Linux), to tell the judging's own peak from the model's weights."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=SHAPES, default="small")
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--rules", type=int, default=1)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        shape, shared, tokenizer_file = json.loads(args.worker)
        print(json.dumps(_worker(shape, shared, tokenizer_file, args.videos, args.batch_size, args.rules)))
        return

    from support.tiny_autoeval import train_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer_file = os.path.join(tmp, "tokenizer.model")
        train_tokenizer(tokenizer_file)
        rows = []
        for shared in (True, False):
            worker = json.dumps([args.shape, shared, tokenizer_file])
            out = subprocess.run([sys.executable, __file__, "--worker", worker, "--videos", str(args.videos),
                                  "--batch-size", str(args.batch_size), "--rules", str(args.rules)],
                                 check=True, capture_output=True, text=True).stdout
            rows.append((shared, json.loads(out.strip().splitlines()[-1])))
    device = rows[0][1]["device"]
    print(f"AutoEval port, shape {args.shape}, {device}, {args.videos} videos x {2 + args.rules} prompts, "
          f"batch size {args.batch_size}")
    memory = "peak MB (GPU, judging)" if device.startswith("cuda") else "peak RSS MB (before judging)"
    print(f"{'video encoding':<22}{'videos/s':>10}{'s/(video, prompt)':>20}  {memory}")
    for shared, r in rows:
        label = "shared (default)" if shared else "per prompt (as ref.)"
        before = f" ({r['before_mb']:.0f})" if r["before_mb"] else ""
        print(f"{label:<22}{args.videos / r['seconds']:>10.3f}{r['seconds'] / r['prompts']:>20.3f}  "
              f"{r['peak_mb']:.0f}{before}")


if __name__ == "__main__":
    main()
