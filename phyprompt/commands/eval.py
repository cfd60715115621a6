"""`phyprompt eval`: refine a prompt set with each refiner, render with each backend, judge every video, and
write the paper's tables for them (see `phyprompt.evaluation`).

Written to --out: `results.csv`, `results.json` (rows and the run: settings, timings, notes),
`samples.jsonl` (one line per video: prompt, scores, errors), `table.txt`, PNG charts, `report.html` with
side-by-side example videos in `videos/`. The cache (--cache, default OUT/cache) holds every refinement,
video and score, so a killed run resumes, a re-run renders nothing and a new refiner renders only its own
videos; point several runs at one --cache to share it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import time
from functools import partial
from pathlib import Path

from ..evaluation.prompt_sets import load_prompt_set
from ..evaluation.specs import ORIGINAL, Compared
from ..infra.console import fail, progress_bar, quiet_libraries, warn
from ..infra.files import write_text_atomic
from ..language.prompt_lists import PromptListError

PROG = "phyprompt eval"

_LABEL = re.compile(r"([\w.-]+)=(.+)")


def run(args) -> int:
    try:
        prompt_set = load_prompt_set(os.path.expanduser(args.prompts), hard=args.hard, limit=args.limit)
    except PromptListError as error:  # a file that cannot be read, is not text or not a prompt set
        return fail(str(error), prog=PROG)
    try:
        refiners = _refiners(args)
        backends = _backends(args)
    except ValueError as error:
        return fail(str(error), prog=PROG, status=2)
    from ..judges import JudgeSpec

    judge = JudgeSpec.parse(os.path.expanduser(args.judge), model=args.judge_model, frames=args.judge_frames,
                            api_key_env=args.api_key_env, dtype=args.dtype, device=args.device)
    if not args.verbose:
        quiet_libraries()
    for note in prompt_set.notes:
        warn(f"{args.prompts}: {note}")
    from ..evaluation.runner import Evaluation, RenderSettings
    from ..service import Cache, RenderError
    from ..service.ray_pool import ClusterError
    from ..evaluation.tables import build_rows, to_costs, to_csv, to_json, to_text

    out = Path(os.path.expanduser(args.out))
    width, height = args.size or (None, None)
    settings = RenderSettings(seeds=tuple(dict.fromkeys(args.seeds)), negative_prompt=args.negative,
                              steps=args.steps, guidance=args.guidance, frames=args.frames, width=width,
                              height=height, scheduler=args.scheduler)
    evaluation = Evaluation(
        cache=Cache(os.path.expanduser(args.cache) if args.cache else out / "cache"),
        captions=prompt_set.captions, refiners=refiners, backends=backends, judge=judge, settings=settings,
        device=args.device, dtype=args.dtype, judge_batch_size=args.judge_batch_size,
        refiner_batch_size=args.refiner_batch_size,
        max_new_tokens=args.max_new_tokens, bars=partial(progress_bar, args.quiet), warn=warn)
    started = time.perf_counter()
    try:
        if args.ray is not None:
            evaluation.executor = _ray_pool(args)
        samples = evaluation.run()
    except (RenderError, ClusterError) as error:
        return fail(str(error), prog=PROG)
    finally:
        if evaluation.executor is not None:
            evaluation.executor.close()
    rows = build_rows(samples, evaluation.counters, evaluation.token_limits, args.bootstrap)
    run_info = {
        "prompt_set": prompt_set.name, "prompts": len(prompt_set.items), "notes": list(prompt_set.notes),
        "refiners": {r.label: r.to_dict() for r in refiners},
        "backends": {b.label: b.to_dict() for b in backends},
        "judge": judge.to_dict(), "seeds": list(settings.seeds),
        "settings": dataclasses.asdict(settings), "device": args.device, "dtype": args.dtype,
        "rendered_and_judged": evaluation.service.executor.description,
        "max_new_tokens": args.max_new_tokens, "bootstrap_resamples": args.bootstrap,
        "cache": str(evaluation.cache.root), "made_this_run": evaluation.made,
        "stage_seconds_this_run": evaluation.timings, "total_seconds_this_run": 0.0,
    }
    text = to_text(rows)
    print(text, flush=True)
    if not args.quiet:
        print(to_costs(rows, evaluation.timings), file=sys.stderr)
    written = [write_text_atomic(out / "table.txt", text + "\n"), write_text_atomic(out / "results.csv", to_csv(rows))]
    written.append(write_text_atomic(out / "samples.jsonl", "".join(
        json.dumps(_sample_line(s), ensure_ascii=False) + "\n" for s in samples)))
    charts = _charts(rows, out)
    from ..evaluation.report import write_report

    written += charts
    written.append(write_report(out / "report.html", rows, samples, charts, run_info,
                                examples=args.examples))
    run_info["total_seconds_this_run"] = time.perf_counter() - started
    written.append(write_text_atomic(out / "results.json", to_json(rows, run_info)))
    _warn_about_failures(rows)
    unjudged = sum(s.judge_error is not None for s in samples)
    if unjudged:
        warn(f"{unjudged} video(s) could not be judged and are not scored (see samples.jsonl); run again to retry them")
    for path in written:
        print(path, flush=True)
    return 0


def _ray_pool(args):
    from ..service.ray_pool import RayPool

    # Models placed on the CPU need no GPU per worker unless the user asks for one.
    gpus = 0.0 if args.ray_gpus is None and args.device == "cpu" else args.ray_gpus
    return RayPool(args.ray, workers=args.ray_workers, gpus_per_worker=gpus, warn=warn)


def _refiners(args) -> list[Compared]:
    """`original` first (every difference is measured against it), then --refiner and --api-refiner."""
    from ..refiners import RefinerSpec

    specs = [Compared(ORIGINAL, None)]
    for text in args.refiner or ():
        label, spec = _label(text)
        if spec == ORIGINAL:
            continue
        model, adapter = _model_and_adapter(spec)
        default = os.path.basename(os.path.normpath(model)) + (f"+{os.path.basename(os.path.normpath(adapter))}"
                                                               if adapter else "")
        specs.append(Compared(label or default, RefinerSpec.parse(model, adapter=adapter, dtype=args.dtype,
                                                                  device=args.device)))
    for text in args.api_refiner or ():
        label, spec = _label(text)
        model, at, url = spec.partition("@")
        if not (at and model and url):
            raise ValueError(f"--api-refiner takes [LABEL=]MODEL@URL, e.g. gpt-4o@https://api.openai.com/v1, "
                             f"not {text!r}")
        specs.append(Compared(label or model, RefinerSpec.build("api", url, model=model,
                                                                api_key_env=args.api_key_env)))
    labels = [s.label for s in specs]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(f"two refiners are called {repeated[0]!r}: name them with LABEL=... "
                         f"({ORIGINAL!r} is the unrefined prompt's)")
    return specs


def _label(text: str) -> tuple[str | None, str]:
    """`LABEL=SPEC` -> (LABEL, SPEC); a SPEC alone (or an existing path with '=' in it) -> (None, SPEC)."""
    match = _LABEL.fullmatch(text)
    if match and not os.path.exists(os.path.expanduser(text)):
        return match[1], match[2]
    return None, text


def _model_and_adapter(spec: str) -> tuple[str, str | None]:
    """`MODEL+ADAPTER` (split at the last '+', unless the whole is an existing path); each must exist."""
    from ..refiners.builtin import is_builtin

    whole = os.path.expanduser(spec)
    model, plus, adapter = spec.rpartition("+")
    if os.path.exists(whole) or is_builtin(spec) or not plus:
        model, adapter = spec, None
    model, adapter = os.path.expanduser(model), adapter and os.path.expanduser(adapter)
    for path, what in ((model, "refiner folder or .gguf file"), (adapter, "adapter folder")):
        if path and not is_builtin(path) and not os.path.exists(path):
            raise ValueError(f"--refiner: no {what} at {path}; give [LABEL=]FOLDER, FOLDER+ADAPTER or builtin")
    return model, adapter


def _backends(args) -> list[Compared]:
    from ..video.backend import backend_names
    from ..video.spec import BackendSpec

    names = [name for name, _ in args.backend]
    specs = []
    for name, path in args.backend:
        if name not in backend_names():
            raise ValueError(f"--backend: unknown video backend {name!r}; choose one of: {', '.join(backend_names())}")
        path = os.path.expanduser(path)
        if not os.path.exists(path):
            raise ValueError(f"--backend {name}: no model at {path}")
        label = name if names.count(name) == 1 else f"{name}-{os.path.basename(os.path.normpath(path))}"
        specs.append(Compared(label, BackendSpec.build(name, path, dtype=args.dtype, device=args.device)))
    labels = [s.label for s in specs]
    if len(set(labels)) < len(labels):
        raise ValueError("the same --backend is given twice")
    return specs


def _charts(rows, out: Path) -> list[Path]:
    from ..evaluation.charts import write_charts

    try:
        return write_charts(rows, out)
    except ImportError as error:
        warn(f"{error}; the charts were skipped")
        return []


def _sample_line(sample) -> dict:
    refinement = sample.refinement or {}
    return {
        "refiner": sample.refiner, "backend": sample.backend, "caption": sample.caption, "seed": sample.seed,
        "prompt": sample.prompt, "refined": refinement.get("ok"), "refiner_error": refinement.get("error"),
        "video": sample.video_path, "render_error": sample.render_error, "judge_error": sample.judge_error,
        "sa": sample.score["sa"]["score"] if sample.score else None,
        "pc": sample.score["pc"]["score"] if sample.score else None,
        "joint": sample.score["joint"] if sample.score else None,
    }


def _warn_about_failures(rows) -> None:
    for row in rows:
        if row.fallbacks:
            warn(f"{row.refiner} on {row.backend}: {row.fallbacks} prompt(s) fell back to the original "
                 "(counted in the parse rate; see samples.jsonl)")
        if row.failed_renders:
            warn(f"{row.refiner} on {row.backend}: {row.failed_renders} video(s) failed to render and are not "
                 "scored (see samples.jsonl); run again to retry them")
