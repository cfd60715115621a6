"""`python -m train.data validate | from-phygenbench | from-videophy2 | generate | cues`.

Exit codes: 0 done, 1 bad data or a failure the user can fix (one `train.data: error:` line), 2 bad
arguments.
"""

from __future__ import annotations

import argparse
import os
import sys

from phyprompt.infra.console import fail, positive_int, silence_known_warnings
from phyprompt.language.prompt_lists import PromptListError, prompt_key, read_prompt_list
from phyprompt.language.targets import TARGET_NAMES

from .schema import TRAINING_TARGETS, read_examples, write_examples

PROG = "python -m train.data"


def _fail(message: str) -> int:
    return fail(message, prog="train.data")


def _target_tokenizers(pairs: list[str]) -> dict:
    from phyprompt.language.budget import load_tokenizer_counter

    counters = {}
    for pair in pairs:
        name, _, folder = pair.partition("=")
        if name not in TARGET_NAMES or not folder:
            choices = ", ".join(TARGET_NAMES)
            raise ValueError(f"--tokenizer takes TARGET=FOLDER with TARGET one of {choices}, not {pair!r}")
        counters[name] = load_tokenizer_counter(folder)
    return counters


def _validate(args) -> int:
    from .validate import validate

    exclude = {}
    for path in args.exclude:
        exclude.update((prompt_key(p), path) for p in read_prompt_list(path))
    loaded = read_examples(args.files)
    problems = validate(loaded, exclude, _target_tokenizers(args.tokenizer))
    for problem in problems:
        print(problem)
    bad_rows = len({(p.file, p.line) for p in problems})
    counts: dict[str, int] = {}
    for example in loaded.examples:
        counts[example.target] = counts.get(example.target, 0) + 1
    per_target = ", ".join(f"{n} {t}" for t, n in sorted(counts.items())) or "none"
    print(f"{len(loaded.examples)} rows read ({per_target}); {len(problems)} problems in {bad_rows} rows/files",
          file=sys.stderr)
    return 1 if problems else 0


def _build(args) -> int:
    from .builders import from_phygenbench, from_videophy2

    build = from_phygenbench if args.command == "from-phygenbench" else from_videophy2
    result = build(args.source, target=args.target)
    if not result.examples:
        return _fail(f"no usable rows in {args.source}: {result.summary()}")
    write_examples(args.out, result.examples)
    print(f"wrote {args.out}: {result.summary()}", file=sys.stderr)
    return 0


def _generate(args) -> int:
    from phyprompt.infra.progress import TqdmProgress

    from phyprompt.refiners import RefinerSpec

    from .teacher import SERVED_MODEL, Teacher, generate

    prompts = read_prompt_list(args.input)
    if not prompts:
        return _fail(f"{args.input} holds no prompts")
    # a server address or a local model: the options of the other are left out
    spec = RefinerSpec.parse(args.teacher, model=args.model or SERVED_MODEL, api_key_env=args.api_key_env,
                             adapter=args.adapter, device=args.device)
    teacher = Teacher(spec, temperature=args.temperature, max_new_tokens=args.max_new_tokens)
    with TqdmProgress("teacher", "prompt") as bar:
        summary = generate(teacher, prompts, args.out, args.target or list(TRAINING_TARGETS), args.batch_size,
                           None if args.quiet else bar)
    print(f"{args.out}: {summary}", file=sys.stderr)
    return 0


def _cues(args) -> int:
    from .cues import cue_example

    loaded = read_examples(args.files)
    if loaded.problems:
        return _fail(f"{loaded.problems[0]}; `{PROG} validate` lists every problem")
    by_file: dict[str, list] = {}
    for example, (path, _) in zip(loaded.examples, loaded.origins):
        by_file.setdefault(path, []).append(example)
    for path, examples in by_file.items():
        name = os.path.basename(path).removeprefix("concise_")
        try:
            write_examples(os.path.join(args.out_dir, f"cue_{name}"), [cue_example(e) for e in examples])
        except KeyError as error:
            return _fail(f"{path}: no cue for subcategory {error}; add one to train/data/cues.py")
        print(f"wrote {os.path.join(args.out_dir, f'cue_{name}')}: {len(examples)} rows", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Build and check PhyPrompt training data.")
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("validate", help="report every bad row of JSONL data files")
    check.add_argument("files", nargs="+", help="JSONL files in the training schema (train/data/schema.py)")
    check.add_argument("--exclude", action="append", default=[], metavar="FILE",
                       help="evaluation prompt list (txt/jsonl/json/csv) no user prompt may come from; repeatable")
    check.add_argument("--tokenizer", action="append", default=[], metavar="TARGET=FOLDER",
                       help="count TARGET's budget with this tokenizer folder instead of the estimate; repeatable")
    check.set_defaults(run=_validate)

    for name, what in (("from-phygenbench", "PhyGenBench explicit_prompts.json"),
                       ("from-videophy2", "VideoPhy-2 train as CSV or Parquet")):
        build = commands.add_parser(name, help=f"examples from {what}")
        build.add_argument("source", help=what)
        build.add_argument("--out", required=True, help="JSONL file to write")
        build.add_argument("--target", default="cogvideox", choices=TRAINING_TARGETS,
                           help="budget the refined prompts must fit (default cogvideox)")
        build.set_defaults(run=_build)

    teach = commands.add_parser("generate", help="have a teacher model write examples for a prompt list")
    teach.add_argument("--teacher", required=True,
                       help="local model folder, or an OpenAI-compatible API base such as http://localhost:8000/v1")
    teach.add_argument("--in", dest="input", required=True, help="prompt list (txt/jsonl/json/csv)")
    teach.add_argument("--out", required=True, help="JSONL file; appended to, so a rerun resumes")
    teach.add_argument("--target", action="append", choices=TRAINING_TARGETS,
                       help="target(s); each prompt gets one, chosen from its text (default: all three)")
    teach.add_argument("--model", help="model name sent to an endpoint")
    teach.add_argument("--api-key-env", metavar="NAME", default="OPENAI_API_KEY",
                       help="environment variable holding the endpoint's key (default: OPENAI_API_KEY)")
    teach.add_argument("--adapter", help="LoRA adapter folder for a local teacher")
    teach.add_argument("--device", help="device for a local teacher (default: auto)")
    teach.add_argument("--temperature", type=float, default=0.0)
    teach.add_argument("--max-new-tokens", type=int, default=512)
    teach.add_argument("--batch-size", type=positive_int, default=8)
    teach.add_argument("--quiet", action="store_true", help="no progress bar")
    teach.set_defaults(run=_generate)

    cues = commands.add_parser("cues", help="the cue set (the built-in refiner's data) from concise_*.jsonl files")
    cues.add_argument("files", nargs="+", help="concise_<category>.jsonl files")
    cues.add_argument("--out-dir", required=True, help="folder for cue_<category>.jsonl")
    cues.set_defaults(run=_cues)
    return parser


def main(argv=None) -> int:
    silence_known_warnings()  # `teach` with a local teacher and its adapter
    args = build_parser().parse_args(argv)
    from phyprompt.refiners import RefinerLoadError

    from .builders import SourceFormatError
    from .teacher import TeacherError

    try:
        return args.run(args)
    except (PromptListError, SourceFormatError, TeacherError, RefinerLoadError, ValueError, OSError) as error:
        return _fail(str(error))
    except KeyboardInterrupt:
        return _fail("interrupted; what was written so far is kept, rerun to resume")


if __name__ == "__main__":
    sys.exit(main())
