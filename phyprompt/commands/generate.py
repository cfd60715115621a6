"""`phyprompt generate`: refine a prompt (optionally), render it with a video backend, write the video.

The refiner and the video model never sit in memory together: the refiner is loaded, used and released
before the video model is loaded. It fits its prompt to the video model's own tokenizer, which is
loaded alone (no weights) for that. Nothing is written until every video is rendered, and the writer
is atomic, so a cancelled run leaves no partial file behind.

A refinement that fell back to the original prompt is a warning, not a failure: the video is rendered
from the original prompt and the exit status is 0 (`refine` alone exits 3 when nothing was refined).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

from ..infra.console import fail, progress_bar, quiet_libraries, warn
from ..infra.files import write_text_atomic
from ..language.budget import token_use
from .common import open_refiner


def run(args) -> int:
    import torch

    from ..video import backend_class
    from ..video.spec import BackendSpec

    if not args.prompt.strip():
        return fail("the prompt is empty: describe the scene you want to see", prog="phyprompt generate")
    if not args.verbose:
        quiet_libraries()
    refinement = None
    backend_type = backend_class(args.backend)
    # settings the description shows no model can render are bad arguments now, not after a refinement and a
    # load of gigabytes (VideoSettingsError: exit 2); the loaded model checks the rest before it renders
    backend_type.check_request(_request(args, args.prompt))
    if args.refiner or args.endpoint:
        # the tokenizer alone also checks the model folder, before minutes are spent refining
        components = {c.name: getattr(args, c.name) for c in backend_type.info.components
                      if getattr(args, c.name) is not None}  # e.g. LaVie's tokenizer is in its SD folder
        counter = backend_type.load_token_counter(args.model, **components)
        refinement = _refine(args, backend_type.info.target, counter)
    spec = BackendSpec.build(args.backend, args.model, dtype=args.dtype, device=args.device,
                             **{name: getattr(args, name) for name in backend_type.info.load_keywords})
    try:
        backend = spec.open()
        request, videos = _render(args, backend, refinement)
    except torch.cuda.OutOfMemoryError:
        offload = " --offload model (or sequential)," if "offload" in backend_type.info.load_keywords else ""
        return fail(f"out of GPU memory; try{offload} a smaller --size or fewer --frames", prog="phyprompt generate")
    for path in _write(args, backend, request, refinement, videos, spec.options):
        print(path, flush=True)
    return 0


def _render(args, backend, refinement) -> tuple:
    """The request for the main video and its video; with --compare, the original prompt's video too."""
    request = _request(args, refinement.prompt if refinement else args.prompt)
    renders = {"refined" if refinement else "video": request}
    if args.compare:
        renders["original"] = replace(request, prompt=args.prompt)
    for label, item in renders.items():
        _warn_if_cut(backend, f"the {label} prompt" if refinement else "the prompt", item.prompt,
                     "" if refinement else " (shorten it, or refine it with --refiner)")
    if args.negative:
        _warn_if_cut(backend, "the negative prompt", args.negative)
    videos = {}
    for label, item in renders.items():
        with progress_bar(args.quiet, f"denoising ({label})" if args.compare else "denoising", "step") as bar:
            videos[label] = backend.sample(item, progress=bar)
    return request, videos


def _request(args, prompt: str):
    from ..video import SampleRequest

    width, height = args.size or (None, None)
    return SampleRequest(prompt=prompt, negative_prompt=args.negative, seed=args.seed, steps=args.steps,
                         guidance=args.guidance, frames=args.frames, width=width, height=height,
                         scheduler=args.scheduler)


def _write(args, backend, request, refinement, videos, options: dict) -> list[Path]:
    """The video, the comparison (--compare) and the JSON record beside them; the paths written."""
    from ..video.writer import side_by_side, write_video

    out = Path(args.out or f"phyprompt-{args.seed}.mp4")
    main = next(iter(videos.values()))
    # 8-bit as the model's original saves its videos: the same floats give the original's pixels
    written = [write_video(main.frames, main.fps, out, eight_bit=backend.eight_bit)]
    if args.compare:
        pair = side_by_side(videos["original"].frames, videos["refined"].frames)
        written.append(write_video(pair, main.fps, out.with_name(f"{out.stem}-compare{out.suffix}"),
                                   eight_bit=backend.eight_bit))
    record = _record(args, backend, request, main.fps, refinement, written, options)
    written.append(_write_json(record, out.with_suffix(".json")))
    return written


def _refine(args, target: str, counter):
    """The refinement of args.prompt for the backend, its budget counted with the model's tokenizer."""
    refiner = open_refiner(args, args.refiner)
    try:
        with progress_bar(args.quiet, "refining", "tok" if refiner.in_process else "prompt") as bar:
            [refinement] = refiner.refine(
                args.prompt, target=target, seed=args.seed, temperature=args.temperature,
                max_new_tokens=args.refiner_max_new_tokens, target_tokenizer=counter, progress=bar,
            )
    finally:
        refiner.release()  # before the video model is loaded
    if not args.quiet:
        print(f"[{refinement.report()}]", file=sys.stderr)
    if not refinement.ok:  # still exit 0: the video is rendered, from the original prompt
        warn(f"the refinement fell back to the original prompt ({refinement.error}); the video shows the original "
             f"prompt{', on both sides of the comparison' if args.compare else ''}")
    return refinement


def _warn_if_cut(backend, what: str, text: str, hint: str = "") -> None:
    """Never truncate silently: the text encoder drops whatever is past its limit."""
    use = token_use(text, backend, backend.token_limit)
    if use.over:
        warn(use.warning(what, reader=backend.info.name) + hint)


def _record(args, backend, request, fps: float, refinement, written, options: dict) -> dict:
    """Everything needed to make the same video again, and the refinement that made its prompt."""
    load_options = {o.name: o.default for o in backend.info.load_options} | options
    return {
        "original_prompt": args.prompt,
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "backend": args.backend,
        "model": os.path.abspath(args.model),
        "refiner": f"{args.endpoint_model} at {args.endpoint}" if args.endpoint else _folder_or_id(args.refiner),
        "adapter": _folder_or_id(args.adapter),
        "seed": args.seed,
        "settings": {
            **backend.settings(request), "fps": fps, "dtype": args.dtype, "device": args.device, **load_options,
            "refiner_temperature": args.temperature if refinement else None,
            "refiner_max_new_tokens": args.refiner_max_new_tokens if refinement else None,
        },
        "refinement": refinement.to_dict() if refinement else None,
        "video": written[0].name,
        "comparison": written[1].name if args.compare else None,
    }


def _folder_or_id(name: str | None) -> str | None:
    """A local folder as an absolute path; a hub id (or nothing) as given."""
    return os.path.abspath(name) if name and os.path.exists(name) else name


def _write_json(record: dict, path: Path) -> Path:
    """Written like the videos: atomically, so a cancel never leaves half a record."""
    return write_text_atomic(path, json.dumps(record, ensure_ascii=False, indent=2) + "\n")
