"""`phyprompt refine`: rewrite prompts with explicit physics and print them (one, or a file as JSONL)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence

from .common import fail, progress_bar, quiet_libraries


def run(args) -> int:
    from ..refiners.local import LocalRefiner

    if args.file:
        try:
            prompts = _read_prompts(args.file)
        except OSError as exc:
            return fail(f"cannot read {args.file}: {exc.strerror or exc}")
        if not prompts:
            return fail(f"{args.file} holds no prompts (one per line)")
    else:
        prompts = [args.prompt]
        if not args.prompt.strip():
            return fail("the prompt is empty: describe the scene you want to see")
    if args.quiet:
        quiet_libraries()
    refiner = LocalRefiner.load(
        args.model, args.adapter, dtype=args.dtype, device=args.device, quantization=args.quantization,
        merge_adapter=args.merge_adapter, allow_download=True,
    )
    options = dict(target=args.target, temperature=args.temperature, max_new_tokens=args.max_new_tokens,
                   batch_size=args.batch_size, target_tokenizer=args.target_tokenizer)
    chunks = list(_chunks(prompts, args.batch_size))
    total = len(chunks) * args.max_new_tokens
    with progress_bar(args.quiet, "refining", "tok") as bar:
        # one batch at a time, printed as soon as it is done, so a long file streams its results;
        # line i is refined with seed + i, exactly as a single call over the whole file would
        for index, chunk in enumerate(chunks):
            offset = index * args.max_new_tokens
            progress = (lambda done, _total, offset=offset: bar(offset + done, total)) if bar else None
            results = refiner.refine(chunk, seed=args.seed + index * args.batch_size, progress=progress, **options)
            _print_results(results, args)
    return 0


def _read_prompts(path: str) -> list[str]:
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8")
    with stream:
        return [line.strip() for line in stream if line.strip()]


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _print_results(results: Iterable, args) -> None:
    for result in results:
        if args.file or args.json:
            print(json.dumps(result.to_dict(), ensure_ascii=False), flush=True)
        else:
            print(result.prompt, flush=True)
        if not args.quiet and not args.json:
            print(f"[{result.report()}]", file=sys.stderr)
