#!/usr/bin/env python
"""`phyprompt eval`'s own overhead: wall time beyond the time spent inside the video model and the judge.

A stand-in backend takes `--render` seconds per video and returns frames at CogVideoX's shape (49 × 480 × 720,
a moving gradient, so x264 works as on real video); a stand-in judge takes `--judge` seconds per video. The
whole command runs (prompt set, cache keys and fingerprints, writing and reading every mp4, statistics,
table, CSV/JSON, charts, the report with its side-by-side videos), and what is left after subtracting the
stand-ins' sleeps is the harness's overhead: per video, and as a share of a real video's cost at the paper's
settings (CogVideoX-2B, 50 steps: ~90 s on one A100, ~45 s on one H100, from the CogVideoX model card) plus
the judge. A cached re-run is timed too (it renders and judges nothing).

    python benchmarks/eval_overhead.py [--prompts 20] [--seeds 1] [--render 0.05] [--judge 0.02]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from unittest import mock

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "tests"), os.path.join(REPO, "tests", "plugins")]

PUBLISHED_RENDER_S = {"A100": 90.0, "H100": 45.0}  # CogVideoX-2B, 50 steps, 720×480, 49 frames (model card)
JUDGE_ESTIMATE_S = 1.0  # AutoEval 7B, SA + PC, one answer token each: our estimate, not a published figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--render", type=float, default=0.05, help="stand-in render seconds per video")
    parser.add_argument("--judge", type=float, default=0.02, help="stand-in judge seconds per video")
    args = parser.parse_args()

    import torch

    from phyprompt import cli
    from phyprompt.judges import JudgeSpec
    from phyprompt.judges.base import Answer, Judgement
    from phyprompt.video import writer
    from phyprompt.video.backend import Video
    from phyprompt.video.spec import BackendSpec
    from phyprompt_toy_backend import ToyBackend, write_toy_model
    from phyprompt_toy_judge import write_toy_judge

    spent = {"render": 0.0, "judge": 0.0, "write": 0.0, "videos": 0, "judged": 0}
    write_video = writer.write_video

    def timed_write(*a, **k):  # the cache's mp4 encoding: a real cost of keeping videos, shown apart
        began = time.perf_counter()
        try:
            return write_video(*a, **k)
        finally:
            spent["write"] += time.perf_counter() - began

    class Backend:  # what the harness asks of a backend; sleeps for the model's time
        token_limit = 226  # CogVideoX's T5
        eight_bit = ToyBackend.info.eight_bit  # how the cache's files are made, as the toy describes it

        def settings(self, request):
            return {"steps": 50}

        def sample(self, request, progress=None):
            began = time.perf_counter()
            t = torch.linspace(0, 1, 49)[:, None, None, None]
            y = torch.linspace(0, 1, 480)[None, :, None, None]
            x = torch.linspace(0, 1, 720)[None, None, :, None]
            frames = ((x + y + t + torch.tensor([0.0, 0.3, 0.6])) % 1).float()
            time.sleep(max(0.0, args.render - (time.perf_counter() - began)))
            spent["render"] += time.perf_counter() - began
            spent["videos"] += 1
            return Video(frames, 8.0)

    class Judge:
        in_process, name = True, "stand-in"

        def judge(self, videos, captions, *, rules=None, batch_size=1, progress=None):
            began = time.perf_counter()
            time.sleep(args.judge * len(videos))
            spent["judge"] += time.perf_counter() - began
            spent["judged"] += len(videos)
            return [Judgement(c, Answer(4 + i % 2, None, ""), Answer(3 + i % 2, None, "")) for i, c in
                    enumerate(captions)]

        def release(self):
            pass

    with tempfile.TemporaryDirectory() as folder:
        prompts = os.path.join(folder, "prompts.txt")
        with open(prompts, "w", encoding="utf-8") as handle:
            handle.write("".join(f"prompt {i}: a ball bounces {i} times on the floor\n" for i in range(args.prompts)))
        toy = write_toy_model(os.path.join(folder, "toy"))
        judge_folder = write_toy_judge(os.path.join(folder, "judge"))  # a judge folder; the stand-in judges
        command = ["eval", prompts, "--backend", "toy", toy, "--judge", judge_folder, "--out",
                   os.path.join(folder, "out"), "--quiet", "--seeds", *map(str, range(args.seeds))]
        results = []
        with mock.patch.object(BackendSpec, "open", lambda self, **k: Backend()), \
                mock.patch.object(writer, "write_video", timed_write), \
                mock.patch.object(JudgeSpec, "open", lambda self, **k: Judge()), \
                mock.patch.object(JudgeSpec, "identity", lambda self: {"judge": "stand-in"}), \
                mock.patch.object(ToyBackend, "load_token_counter", classmethod(lambda cls, path: _Words())):
            for label in ("first run", "cached re-run"):
                for key in spent:
                    spent[key] = 0 if key in ("videos", "judged") else 0.0
                began = time.perf_counter()
                assert cli.main(command) == 0
                wall = time.perf_counter() - began
                results.append((label, wall, dict(spent)))
    print("| run | videos rendered | wall s | in model + judge s | harness s | of which mp4 writing s | "
          "harness s/video |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, wall, used in results:
        inside = used["render"] + used["judge"]
        per_video = (wall - inside) / (args.prompts * args.seeds)
        print(f"| {label} | {used['videos']} | {wall:.2f} | {inside:.2f} | {wall - inside:.2f} | "
              f"{used['write']:.2f} | {per_video:.3f} |")
    per_video = (results[0][1] - results[0][2]["render"] - results[0][2]["judge"]) / (args.prompts * args.seeds)
    for gpu, render in PUBLISHED_RENDER_S.items():
        print(f"at CogVideoX-2B's published {render:.0f} s/video on one {gpu} (+{JUDGE_ESTIMATE_S:.0f} s judge): "
              f"harness overhead {100 * per_video / (render + JUDGE_ESTIMATE_S):.2f}%")


class _Words:
    description = "words"

    def count(self, text: str) -> int:
        return len(text.split())


if __name__ == "__main__":
    main()
