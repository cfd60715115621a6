"""`phyprompt judge`: score video files against their captions with a physics judge and print, per video,
semantic adherence (SA), physical commonsense (PC), joint success and the continuous scores, plus the
verdict on each physical rule of --rules; one line per video, or JSON lines with --json.

Every input is checked before the judge is loaded (a missing video or a caption list of the wrong
length fails in seconds, not after minutes of loading a 7B model). Videos are judged --batch-size at a
time and each batch is printed as soon as it is done.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from contextlib import nullcontext

from ..infra.console import fail, progress_bar, quiet_libraries
from ..judges.base import check_request
from ..language.prompt_lists import PromptListError, read_prompt_list
from .common import kind_options

PROG = "phyprompt judge"


def run(args) -> int:
    missing = next((video for video in args.videos if not os.path.isfile(video)), None)
    if missing is not None:
        return fail(f"no video at {missing}", prog=PROG)
    try:
        captions = _captions(args)
        rules = _list(args.rules, "rules") if args.rules else []
    except PromptListError as error:
        return fail(str(error), prog=PROG)
    if len(captions) != len(args.videos):
        return fail(f"{args.captions} holds {len(captions)} captions for {len(args.videos)} videos: give one line "
                    "per video, in the same order", prog=PROG, status=2)
    try:
        check_request(args.videos, captions, None, args.batch_size)
    except ValueError as error:  # an empty caption
        return fail(str(error), prog=PROG)
    if not args.verbose:
        quiet_libraries()
    from ..judges import JudgeSpec

    judge = JudgeSpec.parse(os.path.expanduser(args.judge), **kind_options(args, args.judge_options)).open()
    out_of_memory = _out_of_memory_error() if judge.in_process else ()
    total = len(args.videos)
    try:
        with progress_bar(args.quiet, "judging", "video") as bar:
            # one batch at a time, printed as soon as it is done, so a long list streams its results
            for start in range(0, total, args.batch_size):
                chunk = slice(start, start + args.batch_size)
                progress = (lambda done, _total, start=start: bar(start + done, total)) if bar else None
                results = judge.judge(args.videos[chunk], captions[chunk], rules=[rules] * len(captions[chunk]),
                                      batch_size=args.batch_size, progress=progress)
                with bar.cleared() if bar else nullcontext():  # each line on a line of its own, not after the bar
                    _print(args.videos[chunk], results, args.json)
    except out_of_memory:
        return fail("out of GPU memory; try --batch-size 1, fewer --frames or --dtype fp16", prog=PROG)
    finally:
        judge.release()
    return 0


def _captions(args) -> list[str]:
    if args.caption is not None:
        return [args.caption] * len(args.videos)
    return _list(args.captions, "captions")


def _list(path: str, what: str) -> list[str]:
    """The lines of a list file (see `prompt_lists`: .txt one per line, or .jsonl/.json/.csv)."""
    items = read_prompt_list(os.path.expanduser(path))
    if not items:
        raise PromptListError(f"{path} holds no {what}")
    return items


def _out_of_memory_error() -> type[Exception]:
    import torch

    return torch.cuda.OutOfMemoryError


def _print(videos: Sequence[str], results, as_json: bool) -> None:
    for video, result in zip(videos, results):
        if as_json:
            print(json.dumps({"video": video, **result.to_dict()}, ensure_ascii=False), flush=True)
        else:
            print(f"{video}: {result.summary()}", flush=True)
