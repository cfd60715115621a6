#!/usr/bin/env python
"""The render-and-judge service: videos/s in process against a Ray pool of 1 and 2 workers, and what the
service itself costs per video.

For each model pair and executor, renders and judges `--videos` new prompts through `RenderJudge` (the code
`phyprompt eval` and the GRPO video reward run), after one warm-up video that starts the workers and loads
the models (its time is the "start" column). The models are the tests' tiny ones on the CPU, on a local Ray
cluster of `--cpus` CPUs:

- `toy`: the test plugins' toy backend and judge, whose model work is almost nothing, so the time per video
  is the service's own: caching, encoding, shipping bytes to and from workers, scheduling; `toy-720x480`
  the same at CogVideoX's official frame shape (49 frames of 720×480: the encode and the bytes of a real
  video; the toy judge's decoding of them counts as model time);
- `cogvideox`: a tiny CogVideoX and a tiny VideoPhy-2 AutoEval, whose model work is real.

"overhead/video" is the wall time per video less the model's own (the render and judgement seconds the
results record, divided among the workers running at once). Target: under 1.8 s, 2% of a CogVideoX-2B
render on an A100 (~90 s).

    python benchmarks/service.py [--models toy toy-720x480 cogvideox] [--videos 16] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGINS = os.path.join(REPO, "tests", "plugins")
sys.path[:0] = [REPO, os.path.join(REPO, "tests"), PLUGINS]
# the Ray workers find the toy plugins (entry points) where this process does
os.environ["PYTHONPATH"] = os.pathsep.join([REPO, PLUGINS] + [p for p in os.environ.get("PYTHONPATH", "").split(
    os.pathsep) if p])


MODELS = ["toy", "toy-720x480", "cogvideox"]


def build_models(name: str, folder: str):
    """(backend spec, judge spec, request settings) for the model pair `name`."""
    from phyprompt.judges import JudgeSpec
    from phyprompt.video.spec import BackendSpec

    if name.startswith("toy"):
        from phyprompt_toy_backend import write_toy_model
        from phyprompt_toy_judge import write_toy_judge

        backend = BackendSpec.build("toy", write_toy_model(os.path.join(folder, "toy")), device="cpu")
        judge = JudgeSpec.parse(write_toy_judge(os.path.join(folder, "judge")), device="cpu")
        shape = dict(frames=49, width=720, height=480) if name == "toy-720x480" else dict(frames=4, width=16, height=16)
        return backend, judge, shape
    from support.tiny_autoeval import write_tiny_autoeval
    from support.tiny_cogvideox import write_tiny_cogvideox

    backend = BackendSpec.build("cogvideox", write_tiny_cogvideox(os.path.join(folder, "cogvideox")), device="cpu")
    judge = JudgeSpec.parse(write_tiny_autoeval(os.path.join(folder, "autoeval")), device="cpu")
    return backend, judge, dict(frames=9, width=32, height=32, steps=2)


def measure(executor, backend, judge, settings: dict, videos: int, workers: int, cache: str) -> dict:
    from phyprompt.service import Cache, RenderJudge
    from phyprompt.video.backend import SampleRequest

    service = RenderJudge(Cache(cache), executor, judge_batch_size=4)

    def run(prompts: list[str]) -> list:
        requests = [SampleRequest(prompt=p, seed=0, **settings) for p in prompts]
        rendered = service.videos(backend, requests)
        scored = service.scores(judge, [(video, prompt) for video, prompt in zip(rendered, prompts)])
        assert all(v.path for v in rendered) and all(s and s.record for s in scored), "a video or score failed"
        return [(v.record["seconds"], s.record["seconds"]) for v, s in zip(rendered, scored)]

    began = time.perf_counter()
    run(["a warm-up ball rolls down a ramp"])
    start = time.perf_counter() - began
    began = time.perf_counter()
    seconds = run([f"ball number {i} rolls down a ramp and hits a wall" for i in range(videos)])
    wall = time.perf_counter() - began
    service.close()
    model = sum(r + j for r, j in seconds) / videos
    return {"start s": start, "wall s": wall, "videos/s": videos / wall, "model s/video": model,
            "overhead s/video": wall / videos - model / workers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    args = parser.parse_args()

    import ray

    from phyprompt.service import InProcess
    from phyprompt.service.ray_pool import RayPool

    ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="ERROR")
    rows = []
    with tempfile.TemporaryDirectory(prefix="phyprompt-bench-service-") as folder:
        for name in args.models:
            backend, judge, settings = build_models(name, os.path.join(folder, name))
            executors = [("in process", lambda: InProcess(keep_loaded=True), 1)]
            executors += [(f"Ray, {n} worker{'s' * (n > 1)}", lambda n=n: RayPool(workers=n), n) for n in args.workers]
            for label, make, workers in executors:
                cache = tempfile.mkdtemp(dir=folder)
                rows.append({"models": name, "executor": label,
                             **measure(make(), backend, judge, settings, args.videos, workers, cache)})
    ray.shutdown()

    columns = ["models", "executor", "start s", "wall s", "videos/s", "model s/video", "overhead s/video"]
    print(f"{args.videos} videos each, rendered and judged on the CPU ({os.cpu_count()} cores, a Ray cluster of "
          f"{args.cpus} CPUs, 1 CPU per worker)")
    print(" | ".join(f"{c:>16}" for c in columns))
    for row in rows:
        print(" | ".join(f"{row[c]:>16.3f}" if isinstance(row[c], float) else f"{row[c]:>16}" for c in columns))


if __name__ == "__main__":
    main()
