"""`phyprompt refine`: rewrite prompts with explicit physics and print them (one, or a file as JSONL).

Exit status 0 when at least one prompt was refined, `ALL_FELL_BACK` (3) when every answer fell back to the
original prompt (the output is printed all the same: each line is still a usable prompt).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import nullcontext

from ..infra.console import fail, progress_bar, quiet_libraries, warn
from ..language.prompt_lists import PromptListError, read_prompt_list
from .common import open_refiner

ALL_FELL_BACK = 3  # the exit status when no prompt was refined
PROG = "phyprompt refine"


def run(args) -> int:
    if args.file:
        try:
            # '-' is stdin, read like a .txt list
            prompts = read_prompt_list(sys.stdin if args.file == "-" else args.file)
        except PromptListError as error:
            return fail(str(error), prog=PROG)
        if not prompts:
            return fail(f"{'stdin' if args.file == '-' else args.file} holds no prompts", prog=PROG)
    else:
        prompts = [args.prompt]
        if not args.prompt.strip():
            return fail("the prompt is empty: describe the scene you want to see", prog=PROG)
    if not args.verbose:
        quiet_libraries(video=False)
    refiner = open_refiner(args, args.model)
    options = dict(target=args.target, temperature=args.temperature, max_new_tokens=args.max_new_tokens,
                   target_tokenizer=args.target_tokenizer)
    if refiner.in_process:  # a local model reports generation steps: at most max_new_tokens per batch
        chunk_size = args.batch_size
        options["batch_size"] = args.batch_size
        # a step is one token of one prompt, or one token of each prompt of a batch
        unit = "tok" if min(chunk_size, len(prompts)) == 1 else "step"
        most = args.max_new_tokens
    else:
        # a server gets the whole list in one call: it batches on its own side, and Ollama's keep_alive,
        # applied after each call, would otherwise unload and reload the model between chunks
        chunk_size = len(prompts)
        unit, most = "prompt", chunk_size
    chunks = list(_chunks(prompts, chunk_size))
    refined = done = 0
    with progress_bar(args.quiet, "refining", unit) as bar:
        # one batch at a time, printed as soon as it is done, so a long file streams its results (from a
        # local model); line i is refined with seed + i, exactly as a single call over the whole file would
        for index, chunk in enumerate(chunks):
            left = (len(chunks) - index - 1) * most  # the most the later chunks may take

            taken = 0  # the steps this chunk took, as its last progress call says

            def progress(step, total, before=done, left=left):
                nonlocal taken
                taken = step
                bar(before + step, before + total + left)
            results = refiner.refine(chunk, seed=args.seed + index * chunk_size, progress=progress if bar else None,
                                     **options)
            done += taken
            refined += sum(result.ok for result in results)
            with bar.cleared() if bar else nullcontext():  # each line on a line of its own, not after the bar
                _print_results(results, args)
    if refined:
        return 0
    some = "the prompt" if len(prompts) == 1 else f"all {len(prompts)} prompts"
    warn(f"nothing was refined: {some} fell back to the original (exit status {ALL_FELL_BACK})")
    return ALL_FELL_BACK


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
