"""`python -m phyprompt …`: the library from the command line, without ComfyUI.

This module holds the argument parser and the error handling every subcommand shares; each subcommand's
work is in its own module under `phyprompt/commands/`. Building the parser and answering `--help` or a bad
argument import neither torch nor transformers: that happens when a command runs.

Exit status (also in `phyprompt --help` and the README), for scripts:

    0    success: `refine` refined at least one prompt; `generate` wrote the video (also when its
         refinement fell back to the original prompt, which is a warning); `judge` scored every video
    1    a model, file, input or server failed, or ran out of memory
    2    bad arguments: argparse's errors, options that do not go together, `generate` settings the
         video model cannot render (a width that is not a multiple of 16, a frame count it cannot make),
         and a `judge --captions` file whose line count is not the video count
    3    `refine`: nothing was refined, every prompt fell back to the original (the output is printed
         all the same, with --json and --file too)
    130  cancelled (Ctrl+C)

Every error is one `phyprompt <command>: error: …` line on stderr, the form argparse gives a subcommand's
argument errors (only an error before the command is known, such as an unknown command, reads
`phyprompt: error:`).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from .infra.console import positive_int, silence_known_warnings
from .infra.devices import DTYPES, PRECISIONS
from .infra.endpoint import DEFAULT_API_KEY_ENV, DEFAULT_TIMEOUT, check_env_name, is_server, parse_keep_alive
from .infra.kinds import LoadOption, OptionError
from .infra.registry import Registry
from .judges.base import JUDGES
from .language.targets import TARGET_NAMES
from .refiners.base import DEFAULT_MAX_NEW_TOKENS, REFINERS
from .refiners.builtin import is_builtin
from .refiners.loading import DEFAULT_MODEL, QUANTIZATIONS
from .video.backend import backend_info, backend_names
from .video.writer import READABLE_SUFFIXES, SUPPORTED_SUFFIXES

EXIT_STATUS = """exit status:
  0    success: refine refined at least one prompt; generate wrote the video (also when its refinement
       fell back to the original prompt, which is a warning); judge scored every video
  1    a model, file, input or server failed, or ran out of memory
  2    bad arguments, including generate settings the video model cannot render and a judge --captions
       file with another line count than videos
  3    refine: nothing was refined, every prompt fell back to the original (still printed)
  130  cancelled (Ctrl+C); eval keeps everything finished so far in its cache and resumes from it
each failure is one "phyprompt <command>: error: ..." line on stderr
eval exits 0 once its tables are written, also when some refinements fell back or some renders failed
(both counted in the tables, with a warning)"""


class _Parser(argparse.ArgumentParser):
    subcommands: dict[str, argparse.ArgumentParser]  # set on the top-level parser by build_parser

    def error(self, message: str):  # one clear line and exit code 2, without the usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")



def _non_negative(note: str = ""):
    """A float of 0 or more (`note` says what 0 means)."""
    def number(text: str) -> float:
        value = float(text)
        if not (value >= 0 and math.isfinite(value)):  # also rejects nan and inf
            raise argparse.ArgumentTypeError(f"must be 0{note} or more, not {text}")
        return value
    return number


def _positive(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT in pixels, e.g. 720x480, not {text!r}")
    width, height = int(match[1]), int(match[2])
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"width and height must be at least 1 pixel, not {text!r}")
    return width, height


def _video_file(text: str) -> str:
    if Path(text).suffix.lower() not in SUPPORTED_SUFFIXES:
        raise argparse.ArgumentTypeError(f"the file name must end in {', '.join(SUPPORTED_SUFFIXES)}, not {text!r}")
    return text


def _readable_video(text: str) -> str:
    if Path(text).suffix.lower() not in READABLE_SUFFIXES:
        raise argparse.ArgumentTypeError(f"a video file must end in {', '.join(READABLE_SUFFIXES)}, not {text!r}")
    return text


def _argument(check):
    """An argparse type from a check that raises ValueError (EndpointError, OptionError), with its message."""
    def checked(text: str):
        try:
            return check(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    checked.__name__ = check.__name__
    return checked


def _add_option_flag(command: argparse.ArgumentParser, option: LoadOption) -> None:
    """--name for a load option of a video backend or a model kind, as its description says; left out, it is
    None: the model's own default."""
    flag = "--" + option.name.replace("_", "-")
    if option.is_path:  # a file, e.g. VideoCrafter2's --config, or a folder
        command.add_argument(flag, metavar="DIR" if option.marker else "PATH", help=option.help)
    elif option.choices:
        command.add_argument(flag, choices=option.choices, help=f"{option.help} (default: {option.default})")
    elif isinstance(option.default, bool):
        command.add_argument(flag, action=argparse.BooleanOptionalAction, help=option.help)
    else:
        kind = (float if isinstance(option.default, float) else int) if option.is_number else str
        command.add_argument(flag, type=_argument(option.check or kind), metavar="N" if option.is_number else "VALUE",
                             help=f"{option.help} (default: {option.default})" if option.default is not None
                             else option.help)


def _add_kind_options(command: argparse.ArgumentParser, family: Registry, dest: str, own: tuple[str, ...]) -> None:
    """The options of a family's kinds, recorded in `dest` for `commands.common.kind_options`: `own`, which the
    command has had flags for since the built-in kinds came (--adapter, --dtype…), and a flag for each option of
    a kind from another package that the command has none for, made from its description."""
    names = list(own)
    for kind in family.names():
        if kind in family.builtin_names():
            continue
        for option in family.get(kind).info.options:
            if option.name in names:
                continue
            try:
                _add_option_flag(command, option)
            except argparse.ArgumentError:  # a flag of the command's own (--seed): the option is not offered
                continue
            names.append(option.name)
    command.set_defaults(**{dest: tuple(names)})


def _add_refiner_kind(command: argparse.ArgumentParser, own: tuple[str, ...]) -> None:
    kinds = REFINERS.names()
    command.add_argument("--refiner-kind", choices=kinds, metavar="KIND",
                         help=f"the refiner kind: {', '.join(kinds)} (default: api with --endpoint, else the kind "
                              "whose file the refiner is, or local); a kind from another package adds its own "
                              "options")
    _add_kind_options(command, REFINERS, "refiner_options", own)


def _add_endpoint_options(command: argparse.ArgumentParser, local: str) -> None:
    """A refiner on an OpenAI-compatible server, instead of the local one `local` names."""
    group = command.add_argument_group(
        "refiner on a server", f"An OpenAI-compatible server (Ollama, LM Studio, llama.cpp, vLLM, OpenAI) instead "
                               f"of {local}.")
    group.add_argument("--endpoint", metavar="URL",
                       help="the API base, e.g. http://127.0.0.1:11434/v1 (Ollama), or its /chat/completions address")
    group.add_argument("--endpoint-model", metavar="NAME", help="the model the server serves, e.g. qwen2.5:7b")
    group.add_argument("--api-key-env", metavar="NAME", type=_argument(check_env_name), default=DEFAULT_API_KEY_ENV,
                       help=f"the environment variable that holds the server's key (default: {DEFAULT_API_KEY_ENV}; "
                            "not set: no key is sent)")
    group.add_argument("--keep-alive", metavar="VALUE", type=_argument(parse_keep_alive),
                       help="Ollama only: how long the server keeps the model loaded afterwards; 0 frees its memory "
                            "at once, -1 keeps it, or a duration such as 5m (default: the server's)")


# what a refiner kind is given on both refine and generate, under the flags they have always had
_REFINER_OPTIONS = ("dtype", "device", "api_key_env", "keep_alive")


def _add_model_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--dtype", choices=DTYPES, default="auto")
    command.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="phyprompt", description="Physics-aware prompt refinement for text-to-video models.",
                     epilog=EXIT_STATUS, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    refine = commands.add_parser(
        "refine",
        help="rewrite prompts with explicit physics",
        description="Rewrite prompts so a text-to-video model renders physically plausible motion.",
        epilog=EXIT_STATUS, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = refine.add_mutually_exclusive_group(required=True)
    source.add_argument("prompt", nargs="?", help="the prompt to refine")
    source.add_argument("--file", metavar="PATH", help="a prompt list: .txt with one prompt per line ('-' for stdin), "
                        ".jsonl, .json or .csv (a prompt or caption field); JSONL out")
    refine.add_argument("--model",  # None: DEFAULT_MODEL, unless --endpoint is given
                        help=f"refiner folder, .gguf file (dequantised to float) or Hugging Face hub id (default: "
                             f"{DEFAULT_MODEL}, the built-in SmolLM2-135M demonstration refiner: it learned the "
                             "answer format, not good physics; use Qwen2.5-1.5B/7B-Instruct or a trained PhyPrompt "
                             "model for real refinements)")
    refine.add_argument("--adapter", help="a PEFT LoRA adapter folder to apply")
    refine.add_argument("--merge-adapter", action="store_true", default=None,  # None: not given, for any kind
                        help="merge the adapter into the weights")
    refine.add_argument("--target", choices=TARGET_NAMES, default="cogvideox",
                        help="the video model (default: cogvideox)")
    refine.add_argument("--target-tokenizer", metavar="DIR",
                        help="the target's tokenizer folder, to count the budget exactly instead of estimating")
    refine.add_argument("--seed", type=int, default=0)
    refine.add_argument("--temperature", type=_non_negative(" (greedy)"), default=0.0, help="0 = greedy (default)")
    refine.add_argument("--max-new-tokens", type=positive_int, default=DEFAULT_MAX_NEW_TOKENS)
    refine.add_argument("--batch-size", type=positive_int, default=8)
    _add_model_options(refine)
    refine.add_argument("--quantization", choices=QUANTIZATIONS)  # left out: none, or the kind's own
    refine.add_argument("--json", action="store_true", help="print the whole result as JSON")
    _add_output_options(refine, "no progress bar")
    _add_endpoint_options(refine, "--model")
    _add_refiner_kind(refine, ("adapter", "merge_adapter", "quantization", *_REFINER_OPTIONS))

    backends = {name: backend_info(name) for name in backend_names()}
    default_backend = next(iter(backends))
    schedulers = tuple(dict.fromkeys(s for info in backends.values() for s in info.schedulers))
    options = {option.name: option for info in backends.values() for option in info.load_options}
    components = {c.name: c for info in backends.values() for c in info.components}
    generate = commands.add_parser(
        "generate",
        help="render a prompt to a video, refined first with --refiner",
        description=(
            "Render a prompt to a video file with a local text-to-video model, refining it first when "
            "--refiner is given. Settings left out take the backend's defaults. Prints the files written: "
            "the video, the comparison (--compare) and a JSON record of the prompts and settings."
        ),
        epilog="backends:\n" + "\n".join(
            f"  {name}: {info.summary or info.display_name}; --model is {info.weights.describe()}; defaults "
            f"{info.official()}, scheduler {'/'.join(info.schedulers)}, {info.fps:g} fps; the refiner writes "
            f"for the {info.target} budget" for name, info in backends.items()) + "\n\n" + EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    generate.add_argument("prompt", help="what the video shows")
    generate.add_argument("--backend", choices=tuple(backends), default=default_backend,
                          help=f"the video model family (default: {default_backend})")
    generate.add_argument("--model", required=True, metavar="PATH",
                          help="the video model's local folder or checkpoint file (see backends below)")
    generate.add_argument("--refiner", metavar="DIR",
                          help="refine the prompt first with this refiner (folder, .gguf file or hub id)")
    generate.add_argument("--adapter", metavar="DIR", help="a PEFT LoRA adapter for the refiner")
    generate.add_argument("--seed", type=int, default=0, help="the same seed and settings give the same video")
    generate.add_argument("--steps", type=positive_int, help="denoising steps")
    generate.add_argument("--guidance", type=_non_negative(), help="classifier-free guidance scale")
    generate.add_argument("--frames", type=positive_int, help="frame count")
    generate.add_argument("--size", type=_size, metavar="WxH", help="width x height in pixels, e.g. 720x480")
    generate.add_argument("--scheduler", choices=schedulers, help="the sampler (default: the backend's)")
    generate.add_argument("--negative", default="", metavar="TEXT", help="a negative prompt")
    _add_model_options(generate)
    for option in options.values():  # each backend's load options, e.g. CogVideoX's --offload
        _add_option_flag(generate, option)
    for component in components.values():  # folders a single-file checkpoint needs beside it
        generate.add_argument("--" + component.name.replace("_", "-"), metavar="DIR",
                              help=component.help or component.weights.describe())
    generate.add_argument("--out", type=_video_file, metavar="PATH",
                          help=f"the video file, {'/'.join(SUPPORTED_SUFFIXES)} (default: phyprompt-SEED.mp4)")
    generate.add_argument("--compare", action="store_true",
                          help="also render the original prompt with the same seed, side by side with the "
                               "refined one (OUT-compare.mp4; needs --refiner)")
    generate.add_argument("--refiner-max-new-tokens", type=positive_int, default=DEFAULT_MAX_NEW_TOKENS,
                          metavar="N")
    generate.add_argument("--temperature", type=_non_negative(" (greedy)"), default=0.0,
                          help="the refiner's sampling temperature; 0 = greedy (default)")
    _add_output_options(generate, "no progress bars")
    _add_endpoint_options(generate, "--refiner")
    _add_refiner_kind(generate, ("adapter", *_REFINER_OPTIONS))

    judge = commands.add_parser(
        "judge",
        help="score videos for caption match and physics, as VideoPhy-2 does",
        description=(
            "Score video files as VideoPhy-2's AutoEval does: semantic adherence (SA, 1-5: does the video show "
            "its caption?), physical commonsense (PC, 1-5: does it obey physics?), joint success (both at least "
            "4) and, with --rules, whether it follows each rule (0 no, 1 yes, 2 cannot tell). In brackets, the "
            "continuous score: the expected value of the judge's answer-token probabilities (not shown for a "
            "server that sends no log-probabilities). An answer without a number scores 0, as in VideoPhy-2. "
            "Prints one line per video, or JSON lines with --json."
        ),
        epilog=EXIT_STATUS, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    judge.add_argument("videos", nargs="+", type=_readable_video, metavar="VIDEO",
                       help=f"video files ({', '.join(READABLE_SUFFIXES)})")
    captions = judge.add_mutually_exclusive_group(required=True)
    captions.add_argument("--caption", metavar="TEXT", help="what the video shows (the same for every VIDEO)")
    captions.add_argument("--captions", metavar="FILE",
                          help="one caption per video, in order: .txt with one per line, or .jsonl, .json or .csv "
                               "with a caption field")
    judge.add_argument("--judge", required=True, metavar="DIR_OR_URL",
                       help="VideoPhy-2's AutoEval folder (videophysics/videophy_2_auto), a video-language model "
                            "folder (Qwen2.5-VL, Qwen3-VL, Cosmos-Reason2), or an OpenAI-compatible server's address "
                            "such as http://127.0.0.1:8000/v1 (with --model)")
    judge.add_argument("--rules", metavar="FILE",
                       help="physical rules, one per line, each asked about every video")
    judge.add_argument("--frames", type=positive_int, metavar="N",
                       help="frames the judge looks at (default: the judge's own; the AutoEval's 32 are fixed)")
    judge.add_argument("--batch-size", type=positive_int, default=1, metavar="N",
                       help="videos judged at once (default: 1)")
    _add_model_options(judge)
    judge.add_argument("--json", action="store_true", help="print one JSON object per video")
    _add_output_options(judge, "no progress bar")
    server = judge.add_argument_group("judge on a server", "An OpenAI-compatible server with image input (vLLM, "
                                      "llama.cpp, Ollama, OpenAI) at --judge URL; frames are sent as images.")
    server.add_argument("--model", metavar="NAME", help="the model the server serves, e.g. qwen2.5vl:7b")
    server.add_argument("--api-key-env", metavar="NAME", type=_argument(check_env_name), default=DEFAULT_API_KEY_ENV,
                        help=f"the environment variable that holds the server's key (default: {DEFAULT_API_KEY_ENV}; "
                             "not set: no key is sent)")
    server.add_argument("--timeout", type=_positive, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"how long one answer may take (default: {DEFAULT_TIMEOUT:g})")
    _add_kind_options(judge, JUDGES, "judge_options", ("dtype", "device", "frames", "model", "api_key_env", "timeout"))
    evaluate = _add_eval_parser(commands, backends)
    convert = _add_convert_parser(commands, backends)
    parser.subcommands = {"refine": refine, "generate": generate, "judge": judge, "eval": evaluate,
                          "convert": convert}
    return parser


def _add_eval_parser(commands, backends: dict) -> argparse.ArgumentParser:
    evaluate = commands.add_parser(
        "eval",
        help="the paper's tables for refiners x video models on VideoPhy-2 criteria, cached and resumable",
        description=(
            "Refine every prompt of PROMPTS with each refiner (and keep the original prompt as the baseline), "
            "render each prompt with each backend and seed, judge every video, and write SA %, PC % and joint "
            "% (share of videos scoring at least 4) with bootstrap 95% intervals, the paired difference to the "
            "original prompts, parse-rate, budget and timing figures: a table on stdout, results.csv, "
            "results.json, samples.jsonl, PNG charts and report.html with side-by-side videos in --out. "
            "Every refinement, video and score is cached (--cache): a killed run resumes, a re-run renders "
            "nothing, and adding a refiner renders only its own videos."),
        epilog="backends: " + ", ".join(backends) + "\n\n" + EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument("prompts", metavar="PROMPTS",
                          help="VideoPhy-2 test as .csv, .parquet or .jsonl (a caption column; one item per unique "
                               "caption), or a prompt list (.txt, one per line)")
    evaluate.add_argument("--hard", action="store_true", help="only the rows marked is_hard")
    evaluate.add_argument("--limit", type=positive_int, metavar="N",
                          help="a fixed sample of N prompts: those with the smallest sha256 of their caption")
    evaluate.add_argument("--backend", nargs=2, action="append", required=True, metavar=("NAME", "PATH"),
                          help="a video backend and its model; repeat for the transfer table")
    evaluate.add_argument("--refiner", action="append", metavar="[LABEL=]MODEL[+ADAPTER]",
                          help="a local refiner: a folder or .gguf file, optionally +ADAPTER folder, or builtin; "
                               "repeatable (the original prompts are always evaluated)")
    evaluate.add_argument("--api-refiner", action="append", metavar="[LABEL=]MODEL@URL",
                          help="a refiner on an OpenAI-compatible server given the project's instruction, e.g. "
                               "gpt4o=gpt-4o@https://api.openai.com/v1; repeatable")
    evaluate.add_argument("--api-key-env", metavar="NAME", type=_argument(check_env_name), default=DEFAULT_API_KEY_ENV,
                          help=f"the environment variable holding the servers' key (default: {DEFAULT_API_KEY_ENV})")
    evaluate.add_argument("--judge", required=True, metavar="DIR_OR_URL",
                          help="VideoPhy-2's AutoEval folder, a video-language model folder, or a server address "
                               "(with --judge-model)")
    evaluate.add_argument("--judge-model", metavar="NAME", help="the model a judge server serves")
    evaluate.add_argument("--judge-frames", type=positive_int, metavar="N",
                          help="frames the judge looks at (default: the judge's own)")
    evaluate.add_argument("--judge-batch-size", type=positive_int, default=4, metavar="N")
    evaluate.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="SEED",
                          help="video seeds; every prompt is rendered once per seed (default: 0)")
    evaluate.add_argument("--steps", type=positive_int, help="denoising steps (default: each backend's)")
    evaluate.add_argument("--guidance", type=_non_negative(), help="guidance scale (default: each backend's)")
    evaluate.add_argument("--frames", type=positive_int, help="frame count (default: each backend's)")
    evaluate.add_argument("--size", type=_size, metavar="WxH", help="width x height (default: each backend's)")
    evaluate.add_argument("--scheduler", help="the sampler (default: each backend's)")
    evaluate.add_argument("--negative", default="", metavar="TEXT", help="a negative prompt for every video")
    _add_model_options(evaluate)
    evaluate.add_argument("--refiner-batch-size", type=positive_int, default=8, metavar="N")
    evaluate.add_argument("--max-new-tokens", type=positive_int, default=DEFAULT_MAX_NEW_TOKENS, metavar="N",
                          help="the refiners' answer length limit")
    evaluate.add_argument("--out", default="phyprompt-eval", metavar="DIR", help="where the tables, charts and "
                          "report go (default: phyprompt-eval)")
    evaluate.add_argument("--cache", metavar="DIR", help="the cache of refinements, videos and scores (default: "
                          "OUT/cache); share one between runs")
    evaluate.add_argument("--bootstrap", type=positive_int, default=10_000, metavar="N",
                          help="bootstrap resamples for the 95%% intervals (default: 10000)")
    evaluate.add_argument("--examples", type=int, default=3, metavar="N",
                          help="side-by-side videos per refiner and backend in the report (default: 3)")
    _add_output_options(evaluate, "no progress bars")
    ray = evaluate.add_argument_group(
        "on a Ray cluster", "Render and judge on a pool of workers (pip install 'phyprompt[ray]'); refining stays "
        "here. The cache stays here too: workers need the models at the same paths (see docs/ray.md).")
    ray.add_argument("--ray", nargs="?", const="auto", metavar="ADDRESS",
                     help="the cluster's head (HOST:PORT); alone or 'auto': the cluster of RAY_ADDRESS or of this "
                          "machine (`ray start --head`), else a new one here")
    ray.add_argument("--ray-workers", type=positive_int, metavar="N",
                     help="workers in the pool (default: one per GPU of the cluster, or per CPU without GPUs)")
    ray.add_argument("--ray-gpus", type=_non_negative("; workers on CPUs"), metavar="G",
                     help="GPUs per worker; a fraction shares a GPU (default: 1 when the cluster has GPUs)")
    return evaluate


def _add_output_options(command: argparse.ArgumentParser, quiet: str) -> None:
    command.add_argument("--quiet", action="store_true", help=quiet)
    command.add_argument("--verbose", action="store_true",
                         help="also the libraries' own loading bars and notices (transformers, diffusers)")


def _add_convert_parser(commands, backends: dict) -> argparse.ArgumentParser:
    convertible = {name: info for name, info in backends.items() if info.converter}
    convert = commands.add_parser(
        "convert",
        help="convert a video model's original checkpoint into a safetensors folder its backend loads directly",
        description="Convert a video model's original release (e.g. VideoCrafter2's model.ckpt, read with "
                    "weights_only) into a folder of safetensors and config that the backend loads without "
                    "unpickling anything. The folder appears complete or not at all. Prints the folder.",
        epilog="backends with a converter:\n" + "\n".join(
            f"  {name}: SOURCE is {info.weights.describe()}" for name, info in convertible.items()) + "\n\n"
            + EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    convert.add_argument("backend", choices=tuple(convertible), metavar="BACKEND",
                         help=f"the video backend: {', '.join(convertible)}")
    convert.add_argument("source", metavar="SOURCE", help="the original checkpoint file")
    convert.add_argument("out", metavar="OUT_DIR", help="the folder to write (replaced if it exists)")
    convert.add_argument("--dtype", choices=PRECISIONS, help="store the weights in this precision (default: as "
                         "the checkpoint stores them)")
    files = {o.name: o for info in convertible.values() for o in info.load_options if o.suffixes}
    for option in files.values():  # files the conversion reads with the checkpoint, e.g. VideoCrafter2's --config
        _add_option_flag(convert, option)
    return convert


def _refuse_other_backends_options(command: _Parser, args, names_of) -> None:
    """An option (`names_of(info)`) of another backend than --backend's is an error, not silently ignored."""
    own = set(names_of(backend_info(args.backend)))
    every = {name for backend in backend_names() for name in names_of(backend_info(backend))}
    for name in sorted(every - own):
        if getattr(args, name, None) is not None:
            command.error(f"--{name.replace('_', '-')} is not an option of the {args.backend} backend")


def _check_combinations(parser: _Parser, args) -> None:
    """What argparse cannot say itself: options that only make sense together."""
    command = parser.subcommands[args.command]
    if args.command == "convert":
        _refuse_other_backends_options(command, args, lambda info: [o.name for o in info.load_options if o.suffixes])
        return
    if args.command == "eval":
        if is_server(args.judge) != bool(args.judge_model):
            command.error("--judge URL (a server) goes with --judge-model NAME, and --judge-model only with a URL")
        if args.ray is None and (args.ray_workers is not None or args.ray_gpus is not None):
            command.error("--ray-workers and --ray-gpus size a Ray pool: add --ray [ADDRESS]")
        return
    if args.command == "judge":
        if is_server(args.judge) and not args.model:
            command.error("--judge URL is a server: add --model NAME, the model it serves (e.g. qwen2.5vl:7b)")
        if args.model and not is_server(args.judge):
            command.error("--model names the model a server serves: leave it out for the model folder --judge DIR")
        return
    if args.command == "generate":
        _refuse_other_backends_options(command, args, lambda info: info.load_keywords)
    local = {"refine": "model", "generate": "refiner"}[args.command]
    if args.endpoint:
        for name in (local, "adapter"):
            if getattr(args, name):
                command.error(f"--endpoint refines on a server: leave out --{name}, which is for a local refiner")
        if not args.endpoint_model:
            command.error("--endpoint needs --endpoint-model NAME, the model the server serves (e.g. qwen2.5:7b)")
    elif args.endpoint_model or args.keep_alive is not None:
        command.error("--endpoint-model and --keep-alive go with --endpoint URL")
    local_kind = args.refiner_kind in (None, "local")
    if is_builtin(getattr(args, local) or DEFAULT_MODEL) and args.adapter and not args.endpoint and local_kind:
        if args.command == "refine" or args.refiner:
            command.error(f"the built-in refiner brings its own adapter: drop --adapter, or give --{local} a "
                          "base model for it")
    if args.command == "generate" and not (args.refiner or args.endpoint):
        if args.compare:
            command.error("--compare needs --refiner (or --endpoint): it shows the original and the refined "
                          "prompt side by side")
        if args.adapter:
            command.error("--adapter needs --refiner: it is an adapter for the refiner")


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command line; returns the exit status (see the module's docstring). Argument errors exit
    with status 2 through argparse (SystemExit)."""
    silence_known_warnings()
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_combinations(parser, args)

    from .commands import convert, generate, judge, refine  # after the arguments are checked: they lead to torch
    from .commands import eval as evaluate
    from .infra.console import fail
    from .video.backend import VideoSettingsError

    command = {"refine": refine.run, "generate": generate.run, "judge": judge.run, "eval": evaluate.run,
               "convert": convert.run}[args.command]
    prog = f"{parser.prog} {args.command}"  # argparse's own form for this command's errors, whatever the status
    try:
        return command(args)
    except KeyboardInterrupt:
        print("phyprompt: cancelled", file=sys.stderr)
        return 130
    # settings from the command line the model cannot render, options its kind does not take: bad arguments
    except (VideoSettingsError, OptionError) as exc:
        return fail(str(exc), prog=prog, status=2)
    # model folders and inputs the user can fix (RefinerLoadError and VideoModelError are ValueErrors),
    # files that cannot be read or written, a missing optional package
    except (ValueError, OSError, ImportError) as exc:
        return fail(str(exc) or type(exc).__name__, prog=prog)
