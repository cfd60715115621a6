"""What both training stages (train.sft, train.grpo) share: the data files and their examples, the base
model's tokenizer and chat template, where a run resumes, and the manifest `train.export` reads for the model
card."""

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
        print(f"train: skipping bad row: {problem}", file=sys.stderr)
    if len(problems) > 20:
        print(f"train: … {len(problems) - 20} more problems (python -m train.data validate lists them)",
              file=sys.stderr)
    examples = [e for e, origin in zip(loaded.examples, loaded.origins) if origin not in bad]
    if data_args.targets:
        examples = [e for e in examples if e.target in data_args.targets]
    if not examples:
        raise TrainingSetupError(f"no usable examples in {', '.join(files)}")
    return files, examples


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


def read_manifest(folder: str) -> dict:
    """The manifest a training run (or an export of one) left in `folder`; {} when there is none."""
    try:
        with open(os.path.join(folder, MANIFEST), encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def write_manifest(output_dir: str, recipe: str | None, data_files, examples, model_args, training_args,
                   metrics: dict, stage: str = "sft", extra: dict | None = None,
                   settings: tuple[str, ...] = ("num_train_epochs", "max_steps", "learning_rate",
                                                "per_device_train_batch_size", "gradient_accumulation_steps",
                                                "max_length", "seed")) -> None:
    """Record what produced this run; `stage` is "sft" or "grpo", `extra` the stage's own facts (GRPO: the
    rewards, the curriculum and the stage-1 manifest it started from)."""
    targets: dict[str, int] = {}
    for example in examples:
        targets[example.target] = targets.get(example.target, 0) + 1
    manifest = {
        "stage": stage,
        "base_model": model_args.model_name_or_path,
        "recipe": recipe,
        "method": "LoRA" if model_args.use_peft else "full fine-tuning",
        "lora": {"r": model_args.lora_r, "alpha": model_args.lora_alpha, "dropout": model_args.lora_dropout,
                 "target_modules": model_args.lora_target_modules} if model_args.use_peft else None,
        "data": [{"file": f, "sha256": _file_digest(f)} for f in data_files],
        "examples": len(examples),
        "examples_per_target": targets,
        "training": {k: getattr(training_args, k) for k in settings},
        "metrics": metrics,
        **(extra or {}),
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

    from phyprompt.infra.console import first_line
    from phyprompt.refiners.loading import check_model_folder, is_hub_id

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


def parse_recipe(argv, dataclass_types: tuple, example: str) -> tuple[list, str | None]:
    """The recipe (`--config FILE`) and command-line options read by trl's `TrlParser` into
    `dataclass_types`, in order, and the recipe's path; every problem is one TrainingSetupError."""
    import yaml
    from trl import TrlParser

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[-1:] == ["--config"]:
        raise TrainingSetupError(f"--config needs a recipe file, e.g. --config {example}")
    recipe = argv[argv.index("--config") + 1] if "--config" in argv else None
    if recipe is not None and not os.path.isfile(recipe):
        raise TrainingSetupError(f"recipe not found: {recipe}")
    try:  # unknown recipe keys, wrong value types, broken YAML, settings trl refuses (a batch G does not divide)
        return list(TrlParser(dataclass_types).parse_args_and_config(argv)), recipe
    except (ValueError, yaml.YAMLError) as error:
        raise TrainingSetupError(f"{recipe or 'options'}: {' '.join(str(error).split())}") from None
