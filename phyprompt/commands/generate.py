"""`phyprompt generate`: refine a prompt (optionally), render it with a video backend, write the video.

The refiner and the video model never sit in memory together: the refiner is loaded, used and released
before the video model is loaded. It fits its prompt to the video model's own tokenizer, which is
loaded alone (no weights) for that. Nothing is written until every video is rendered, and the writer
is atomic, so a cancelled run leaves no partial file behind.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from dataclasses import replace
from pathlib import Path

import torch

from .common import fail, progress_bar, quiet_libraries, warn


def run(args) -> int:
    from ..video import backend_class, load_backend

    if not args.prompt.strip():
        return fail("the prompt is empty: describe the scene you want to see")
    if args.quiet:
        quiet_libraries()
    refinement = None
    if args.refiner:
        # the tokenizer alone also checks the model folder, before minutes are spent refining
        counter = backend_class(args.backend).load_token_counter(args.model)
        refinement = _refine(args, counter)
    try:
        backend = load_backend(args.backend, args.model, dtype=args.dtype, device=args.device, offload=args.offload)
        request, videos = _render(args, backend, refinement)
    except torch.cuda.OutOfMemoryError:
        return fail("out of GPU memory; try --offload model (or sequential), a smaller --size or fewer --frames")
    for path in _write(args, backend, request, refinement, videos):
        print(path, flush=True)
    return 0


def _render(args, backend, refinement) -> tuple:
    """The request for the main video and its video; with --compare, the original prompt's video too."""
    from ..video import SampleRequest

    width, height = args.size or (None, None)
    request = SampleRequest(
        prompt=refinement.prompt if refinement else args.prompt, negative_prompt=args.negative, seed=args.seed,
        steps=args.steps, guidance=args.guidance, frames=args.frames, width=width, height=height,
        scheduler=args.scheduler,
    )
    renders = {"refined" if refinement else "video": request}
    if args.compare:
        renders["original"] = replace(request, prompt=args.prompt)
    for label, item in renders.items():
        _warn_if_cut(backend, args.backend, f"the {label} prompt" if refinement else "the prompt", item.prompt,
                     "" if refinement else " (shorten it, or refine it with --refiner)")
    if args.negative:
        _warn_if_cut(backend, args.backend, "the negative prompt", args.negative)
    videos = {}
    for label, item in renders.items():
        with progress_bar(args.quiet, f"denoising ({label})" if args.compare else "denoising", "step") as bar:
            videos[label] = backend.sample(item, progress=bar)
    return request, videos


def _write(args, backend, request, refinement, videos) -> list[Path]:
    """The video, the comparison (--compare) and the JSON record beside them; the paths written."""
    from ..video.writer import side_by_side, write_video

    out = Path(args.out or f"phyprompt-{args.seed}.mp4")
    main = next(iter(videos.values()))
    written = [write_video(main.frames, main.fps, out)]
    if args.compare:
        pair = side_by_side(videos["original"].frames, videos["refined"].frames)
        written.append(write_video(pair, main.fps, out.with_name(f"{out.stem}-compare{out.suffix}")))
    record = _record(args, backend, request, main.fps, refinement, written)
    written.append(_write_json(record, out.with_suffix(".json")))
    return written


def _refine(args, counter):
    """The refinement of args.prompt for the backend, its budget counted with the model's tokenizer."""
    from ..refiners.local import LocalRefiner

    refiner = LocalRefiner.load(args.refiner, args.adapter, dtype=args.dtype, device=args.device, allow_download=True)
    try:
        with progress_bar(args.quiet, "refining", "tok") as bar:
            [refinement] = refiner.refine(
                args.prompt, target=args.backend, seed=args.seed, temperature=args.temperature,
                max_new_tokens=args.refiner_max_new_tokens, target_tokenizer=counter, progress=bar,
            )
    finally:
        refiner.release()  # before the video model is loaded
    if not args.quiet:
        print(f"[{refinement.report()}]", file=sys.stderr)
    return refinement


def _warn_if_cut(backend, name: str, what: str, text: str, hint: str = "") -> None:
    """Never truncate silently: the text encoder drops whatever is past its limit."""
    tokens = backend.count(text)
    if tokens > backend.token_limit:
        warn(f"{what} is {tokens} tokens ({backend.description}) and {name} reads only {backend.token_limit}; "
             f"the rest is cut off{hint}")


def _record(args, backend, request, fps: float, refinement, written) -> dict:
    """Everything needed to make the same video again, and the refinement that made its prompt."""
    defaults = backend.defaults

    def chosen(value, default):
        return default if value is None else value

    return {
        "original_prompt": args.prompt,
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "backend": args.backend,
        "model": os.path.abspath(args.model),
        "refiner": _folder_or_id(args.refiner),
        "adapter": _folder_or_id(args.adapter),
        "seed": args.seed,
        "settings": {
            "steps": chosen(request.steps, defaults.steps),
            "guidance": chosen(request.guidance, defaults.guidance),
            "frames": chosen(request.frames, defaults.frames),
            "width": chosen(request.width, defaults.width),
            "height": chosen(request.height, defaults.height),
            "fps": fps,
            "scheduler": chosen(request.scheduler, defaults.scheduler),
            "dtype": args.dtype,
            "device": args.device,
            "offload": args.offload,
            "refiner_temperature": args.temperature if args.refiner else None,
            "refiner_max_new_tokens": args.refiner_max_new_tokens if args.refiner else None,
        },
        "refinement": refinement.to_dict() if refinement else None,
        "video": written[0].name,
        "comparison": written[1].name if args.compare else None,
    }


def _folder_or_id(name: str | None) -> str | None:
    """A local folder as an absolute path; a hub id (or nothing) as given."""
    return os.path.abspath(name) if name and os.path.exists(name) else name


def _write_json(record: dict, path: Path) -> Path:
    """Written like the videos: to a hidden temporary file, renamed over `path` once complete."""
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    try:
        partial.write_text(json.dumps(record, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path
