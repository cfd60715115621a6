"""`python -m phyprompt …`: the library from the command line, without ComfyUI."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Iterable, Iterator, Sequence

from .devices import DTYPES
from .loading import DEFAULT_MODEL, QUANTIZATIONS
from .targets import TARGET_NAMES


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one clear line and exit code 2, without the usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be 0 (greedy) or more, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="phyprompt", description="Physics-aware prompt refinement for text-to-video models.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    refine = commands.add_parser(
        "refine",
        help="rewrite prompts with explicit physics",
        description="Rewrite prompts so a text-to-video model renders physically plausible motion.",
    )
    source = refine.add_mutually_exclusive_group(required=True)
    source.add_argument("prompt", nargs="?", help="the prompt to refine")
    source.add_argument("--file", metavar="PATH", help="a file with one prompt per line ('-' for stdin); JSONL out")
    refine.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"refiner folder or Hugging Face hub id (default: {DEFAULT_MODEL})")
    refine.add_argument("--adapter", help="a PEFT LoRA adapter folder to apply")
    refine.add_argument("--merge-adapter", action="store_true", help="merge the adapter into the weights")
    refine.add_argument("--target", choices=TARGET_NAMES, default="cogvideox",
                        help="the video model (default: cogvideox)")
    refine.add_argument("--target-tokenizer", metavar="DIR",
                        help="the target's tokenizer folder, to count the budget exactly instead of estimating")
    refine.add_argument("--seed", type=int, default=0)
    refine.add_argument("--temperature", type=_non_negative_float, default=0.0, help="0 = greedy (default)")
    refine.add_argument("--max-new-tokens", type=_positive_int, default=512)
    refine.add_argument("--batch-size", type=_positive_int, default=8)
    refine.add_argument("--dtype", choices=DTYPES, default="auto")
    refine.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    refine.add_argument("--quantization", choices=QUANTIZATIONS, default="none")
    refine.add_argument("--json", action="store_true", help="print the whole result as JSON")
    refine.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _read_prompts(path: str) -> list[str]:
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8")
    with stream:
        return [line.strip() for line in stream if line.strip()]


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _refine(args) -> int:
    from .loading import RefinerLoadError
    from .progress import TqdmProgress
    from .refiner import Refiner

    if args.file:
        try:
            prompts = _read_prompts(args.file)
        except OSError as exc:
            return _fail(f"cannot read {args.file}: {exc.strerror or exc}")
        if not prompts:
            return _fail(f"{args.file} holds no prompts (one per line)")
    else:
        prompts = [args.prompt]
        if not args.prompt.strip():
            return _fail("the prompt is empty: describe the scene you want to see")
    try:
        refiner = Refiner.load(
            args.model, args.adapter, dtype=args.dtype, device=args.device, quantization=args.quantization,
            merge_adapter=args.merge_adapter, allow_download=True,
        )
    except RefinerLoadError as exc:
        return _fail(str(exc))

    options = dict(target=args.target, temperature=args.temperature, max_new_tokens=args.max_new_tokens,
                   batch_size=args.batch_size, target_tokenizer=args.target_tokenizer)
    chunks = list(_chunks(prompts, args.batch_size))
    total = len(chunks) * args.max_new_tokens
    bar = None if args.quiet else TqdmProgress("refining", "tok")
    try:
        # one batch at a time, printed as soon as it is done, so a long file streams its results;
        # line i is refined with seed + i, exactly as a single call over the whole file would
        for index, chunk in enumerate(chunks):
            offset = index * args.max_new_tokens
            progress = (lambda done, _total, offset=offset: bar(offset + done, total)) if bar else None
            results = refiner.refine(chunk, seed=args.seed + index * args.batch_size, progress=progress, **options)
            _print_results(results, args)
    except (ValueError, FileNotFoundError) as exc:
        return _fail(str(exc))
    finally:
        if bar:
            bar.close()
    return 0


def _print_results(results: Iterable, args) -> None:
    for result in results:
        if args.file or args.json:
            print(json.dumps(result.to_dict(), ensure_ascii=False), flush=True)
        else:
            print(result.prompt, flush=True)
        if not args.quiet and not args.json:
            print(f"[{result.report()}]", file=sys.stderr)


def _fail(message: str) -> int:
    print(f"phyprompt: error: {message}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "refine":
            return _refine(args)
    except KeyboardInterrupt:
        print("phyprompt: cancelled", file=sys.stderr)
        return 130
    raise AssertionError(f"unhandled command {args.command}")
