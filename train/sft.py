"""Stage 1: supervised fine-tuning on physics chain-of-thought examples.

    python -m train.sft --config train/recipes/<recipe>.yaml [--any_option value ...]
    accelerate launch --config_file train/accelerate/zero2.yaml -m train.sft --config …

The recipe is a YAML file read by trl's `TrlParser` into three dataclasses: `DataArguments` (below),
trl's `SFTConfig` and trl's `ModelConfig` (LoRA is `use_peft: true`; without it the whole model is
trained). Command-line options override the recipe.

Each example becomes a prompt/completion pair. The prompt is exactly what the refiner sees at inference:
the project's instruction in the base model's chat template, followed by the assistant prefix
(`phyprompt.instruction.render_prompt`). The completion is the rest of the canonical answer plus EOS, and
the loss is on the completion only. Training and inference therefore cannot drift apart.

Checkpoints go to `output_dir/checkpoint-N`; a rerun with checkpoints there resumes from the last one.
At the end the model (or adapter), the tokenizer, `phyprompt_training.json` (data and recipe, read by
`train.export` for the model card) and `loss.png` are written to `output_dir`.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field

DTYPES = ("auto", "bfloat16", "float16", "float32")  # ModelConfig.dtype values
MANIFEST = "phyprompt_training.json"


class TrainingSetupError(ValueError):
    """The recipe, the data or the base model cannot be used; the message says what to change."""


@dataclass
class DataArguments:
    train_files: list[str] = field(
        default_factory=lambda: ["train/data/seed_*.jsonl"],
        metadata={"help": "JSONL files or glob patterns in the training schema"},
    )
    targets: list[str] | None = field(default=None, metadata={"help": "keep only these targets (default: all)"})
    eval_fraction: float = field(default=0.0, metadata={"help": "share of examples held out for eval loss"})
    split_seed: int = field(default=0, metadata={"help": "seed of the train/eval split"})


def expand_files(patterns: list[str]) -> list[str]:
    files = []
    for pattern in patterns:
        matched = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matched:
            raise TrainingSetupError(f"no data file matches {pattern!r}")
        missing = [path for path in matched if not os.path.isfile(path)]
        if missing:
            raise TrainingSetupError(f"data file not found: {missing[0]}")
        files.extend(matched)
    return files


def load_training_examples(data_args: DataArguments):
    """The usable examples of the data files; bad rows are reported on stderr and left out."""
    from .data.schema import read_examples
    from .data.validate import validate

    files = expand_files(data_args.train_files)
    loaded = read_examples(files)
    problems = validate(loaded)
    bad = {(p.file, p.line) for p in problems}
    for problem in problems[:20]:
        print(f"train.sft: skipping bad row: {problem}", file=sys.stderr)
    if len(problems) > 20:
        print(f"train.sft: … {len(problems) - 20} more problems (python -m train.data validate lists them)",
              file=sys.stderr)
    examples = [e for e, origin in zip(loaded.examples, loaded.origins) if origin not in bad]
    if data_args.targets:
        examples = [e for e in examples if e.target in data_args.targets]
    if not examples:
        raise TrainingSetupError(f"no usable examples in {', '.join(files)}")
    return files, examples


def training_tokens(example, tokenizer) -> dict[str, list[int]]:
    """One example tokenized the way the refiner tokenizes at inference (no special tokens added to the
    rendered text: the chat template already holds them), with EOS closing the answer and a mask that puts
    the loss on the answer only. Tokenizing here rather than in trl keeps tokenizers that add a BOS of
    their own from seeing two in training and one at inference."""
    pair = prompt_completion(example, tokenizer)
    prompt = tokenizer(pair["prompt"], add_special_tokens=False)["input_ids"]
    completion = tokenizer(pair["completion"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return {"input_ids": prompt + completion, "completion_mask": [0] * len(prompt) + [1] * len(completion)}


def prompt_completion(example, tokenizer) -> dict[str, str]:
    """One example as the text the refiner is given and the text it should continue with."""
    from phyprompt.instruction import answer_continuation, build_messages, render_prompt

    return {
        "prompt": render_prompt(tokenizer, build_messages(example.user_prompt, example.target)),
        "completion": answer_continuation(example.reasoning, example.refined_prompt),
    }


def use_chat_template(tokenizer, model_name: str, chat_template_path: str | None) -> None:
    """Make sure the tokenizer has the chat template training will render with.

    trl applies `chat_template_path` inside the trainer, after our prompts are already rendered, so the
    recipe option is applied here instead (and cleared before the trainer sees it)."""
    if chat_template_path:
        if not os.path.isfile(chat_template_path):
            raise TrainingSetupError(f"chat_template_path {chat_template_path} is not a file (a .jinja template)")
        with open(chat_template_path, encoding="utf-8") as handle:
            tokenizer.chat_template = handle.read()
    if not getattr(tokenizer, "chat_template", None):
        raise TrainingSetupError(
            f"{model_name} has no chat template (is it a base model rather than an -Instruct one?): use an "
            "instruct model, or set chat_template_path: FILE.jinja in the recipe"
        )


def _file_digest(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()[:16]


def write_manifest(output_dir: str, recipe: str | None, data_files, examples, model_args, training_args,
                   metrics: dict) -> None:
    targets: dict[str, int] = {}
    for example in examples:
        targets[example.target] = targets.get(example.target, 0) + 1
    manifest = {
        "base_model": model_args.model_name_or_path,
        "recipe": recipe,
        "method": "LoRA" if model_args.use_peft else "full fine-tuning",
        "lora": {"r": model_args.lora_r, "alpha": model_args.lora_alpha, "dropout": model_args.lora_dropout,
                 "target_modules": model_args.lora_target_modules} if model_args.use_peft else None,
        "data": [{"file": f, "sha256": _file_digest(f)} for f in data_files],
        "examples": len(examples),
        "examples_per_target": targets,
        "training": {k: getattr(training_args, k) for k in (
            "num_train_epochs", "max_steps", "learning_rate", "per_device_train_batch_size",
            "gradient_accumulation_steps", "max_length", "seed")},
        "metrics": metrics,
    }
    with open(os.path.join(output_dir, MANIFEST), "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2)


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The newest `checkpoint-N` whose save finished (trainer_state.json is written last), so a run
    killed in the middle of a save resumes from the one before."""
    if not os.path.isdir(output_dir):
        return None
    steps = [int(name.split("-")[1]) for name in os.listdir(output_dir)
             if name.startswith("checkpoint-") and name.split("-")[1].isdigit()
             and os.path.isfile(os.path.join(output_dir, name, "trainer_state.json"))]
    return os.path.join(output_dir, f"checkpoint-{max(steps)}") if steps else None


def resume_point(training_args) -> str | None:
    """The checkpoint to resume from: a path the recipe names; the last complete one in output_dir when it
    says `true` or nothing; none when it says `false` (start over, overwriting)."""
    chosen = str(training_args.resume_from_checkpoint or "").strip()
    if chosen.lower() == "false":
        return None
    last = last_complete_checkpoint(training_args.output_dir)
    if chosen.lower() == "true" and last is None:
        raise TrainingSetupError(f"resume_from_checkpoint is true but {training_args.output_dir} has no checkpoint")
    if chosen and chosen.lower() != "true":
        if not os.path.isfile(os.path.join(chosen, "trainer_state.json")):
            raise TrainingSetupError(f"resume_from_checkpoint {chosen} is not a complete checkpoint folder")
        return chosen
    return last


def base_model(model_args, training_args):
    """The tokenizer, and how trl should load the model: ModelConfig's dtype, attention, revision and 4/8-bit
    (QLoRA) settings. trl loads it inside the trainer, so accelerate, DeepSpeed and FSDP place the weights."""
    from transformers import AutoTokenizer

    from phyprompt.refiners.loading import check_model_folder, first_line, is_hub_id

    name = model_args.model_name_or_path
    if not name:
        raise TrainingSetupError("the recipe names no model_name_or_path (a base instruct model folder)")
    if model_args.dtype not in (None, *DTYPES):
        raise TrainingSetupError(f"dtype {model_args.dtype!r} is not one of {', '.join(DTYPES)}")
    if training_args.trust_remote_code:
        raise TrainingSetupError("trust_remote_code is not allowed: choose a model transformers supports natively")
    if name.lower().endswith(".gguf"):  # trl loads a folder; a GGUF file is converted once first
        raise TrainingSetupError(f"{name} is a GGUF file: convert it to a model folder first with "
                                 "python -m train.gguf_import --gguf FILE --out FOLDER, and train on that folder")
    local = not is_hub_id(name)
    if local:
        check_model_folder(name)  # one-line errors for a missing, incomplete or damaged folder
    common = dict(revision=model_args.model_revision, local_files_only=local, trust_remote_code=False)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, **common)
    except (OSError, ValueError) as error:
        raise TrainingSetupError(f"could not load the tokenizer of {name}: {first_line(error)}") from error
    init = dict(common, dtype=model_args.dtype or "auto", attn_implementation=model_args.attn_implementation)
    return tokenizer, init


def check_evaluation(data_args: DataArguments, training_args) -> None:
    if not 0 <= data_args.eval_fraction < 1:
        raise TrainingSetupError(f"eval_fraction must be at least 0 and below 1, not {data_args.eval_fraction}")
    if data_args.eval_fraction == 0 and str(training_args.eval_strategy).rsplit(".", 1)[-1].lower() != "no":
        raise TrainingSetupError("eval_strategy asks for evaluation but eval_fraction is 0: set eval_fraction "
                                 "(e.g. 0.05) or eval_strategy: 'no'")


def run(data_args: DataArguments, training_args, model_args, recipe: str | None = None, callbacks=()) -> dict:
    """Fine-tune as the three configs say; returns the final metrics."""
    from datasets import Dataset
    from trl import SFTTrainer, get_peft_config, get_quantization_config

    from phyprompt.refiners.loading import first_line

    from .plot import plot_loss

    check_evaluation(data_args, training_args)
    data_files, examples = load_training_examples(data_args)
    tokenizer, training_args.model_init_kwargs = base_model(model_args, training_args)
    use_chat_template(tokenizer, model_args.model_name_or_path, training_args.chat_template_path)
    training_args.chat_template_path = None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    dataset = Dataset.from_list([training_tokens(e, tokenizer) for e in examples])
    eval_dataset = None
    if data_args.eval_fraction > 0:
        split = dataset.train_test_split(test_size=data_args.eval_fraction, seed=data_args.split_seed)
        dataset, eval_dataset = split["train"], split["test"]
    training_args.completion_only_loss = True

    try:
        trainer = SFTTrainer(
            model=model_args.model_name_or_path, args=training_args, train_dataset=dataset,
            eval_dataset=eval_dataset, processing_class=tokenizer, peft_config=get_peft_config(model_args),
            quantization_config=get_quantization_config(model_args), callbacks=list(callbacks),
        )
    except (OSError, ImportError) as error:  # unreadable weights; bitsandbytes missing for 4/8-bit
        raise TrainingSetupError(f"could not load {model_args.model_name_or_path}: {first_line(error)}") from error
    checkpoint = resume_point(training_args)
    if checkpoint:
        print(f"train.sft: resuming from {checkpoint}", file=sys.stderr)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    metrics = dict(result.metrics)
    if eval_dataset is not None:
        metrics.update(trainer.evaluate())
    trainer.save_model(training_args.output_dir)  # on every rank: ZeRO-3 and FSDP gather the shards here
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(training_args.output_dir)
        plot_loss(trainer.state.log_history, os.path.join(training_args.output_dir, "loss.png"),
                  title=f"SFT of {os.path.basename(os.path.normpath(model_args.model_name_or_path))}")
        write_manifest(training_args.output_dir, recipe, data_files, examples, model_args, training_args, metrics)
    return metrics


def parse(argv=None):
    import yaml
    from trl import ModelConfig, SFTConfig, TrlParser

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[-1:] == ["--config"]:
        raise TrainingSetupError("--config needs a recipe file, e.g. --config train/recipes/smollm2-135m-cpu.yaml")
    recipe = argv[argv.index("--config") + 1] if "--config" in argv else None
    if recipe is not None and not os.path.isfile(recipe):
        raise TrainingSetupError(f"recipe not found: {recipe}")
    parser = TrlParser((DataArguments, SFTConfig, ModelConfig))
    try:
        data_args, training_args, model_args = parser.parse_args_and_config(argv)
    except (ValueError, yaml.YAMLError) as error:  # unknown recipe keys, wrong value types, broken YAML
        raise TrainingSetupError(f"{recipe or 'options'}: {' '.join(str(error).split())}") from None
    return data_args, training_args, model_args, recipe


def main(argv=None) -> int:
    from phyprompt.commands.common import fail
    from phyprompt.refiners.loading import RefinerLoadError

    try:
        data_args, training_args, model_args, recipe = parse(argv)
        metrics = run(data_args, training_args, model_args, recipe)
    except (TrainingSetupError, RefinerLoadError) as error:
        return fail(str(error), prog="train.sft")
    except KeyboardInterrupt:
        return fail("interrupted; run the same command again to resume from the last checkpoint", prog="train.sft")
    print(json.dumps({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, indent=2))
    print(f"train.sft: wrote {training_args.output_dir} (loss curve: loss.png)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
