"""Stage 1: supervised fine-tuning on physics chain-of-thought examples.

    python -m train.sft --config train/recipes/<recipe>.yaml [--any_option value ...]
    accelerate launch --config_file train/accelerate/zero2.yaml -m train.sft --config …

The recipe is a YAML file read by trl's `TrlParser` into three dataclasses: `DataArguments` (below),
trl's `SFTConfig` and trl's `ModelConfig` (LoRA is `use_peft: true`; without it the whole model is
trained). Command-line options override the recipe.

Each example becomes a prompt/completion pair. The prompt is exactly what the refiner sees at inference:
the project's instruction in the base model's chat template, followed by the assistant prefix
(`phyprompt.language.instruction.render_prompt`). The completion is the rest of the canonical answer plus EOS, and
the loss is on the completion only. Training and inference therefore cannot drift apart.

Checkpoints go to `output_dir/checkpoint-N`; a rerun with checkpoints there resumes from the last one.
At the end the model (or adapter), the tokenizer, `phyprompt_training.json` (data and recipe, read by
`train.export` for the model card) and `loss.png` are written to `output_dir`.
"""

from __future__ import annotations

import json
import os
import sys

from .stages import (DataArguments, TrainingSetupError, base_model, load_training_examples, parse_recipe, resume_point,
                      use_chat_template, write_manifest)


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
    from phyprompt.language.instruction import answer_continuation, build_messages, render_prompt

    return {
        "prompt": render_prompt(tokenizer, build_messages(example.user_prompt, example.target)),
        "completion": answer_continuation(example.reasoning, example.refined_prompt),
    }


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

    from phyprompt.infra.console import first_line

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
    from trl import ModelConfig, SFTConfig

    (data_args, training_args, model_args), recipe = parse_recipe(
        argv, (DataArguments, SFTConfig, ModelConfig), "train/recipes/smollm2-135m-cpu.yaml")
    return data_args, training_args, model_args, recipe


def main(argv=None) -> int:
    from phyprompt.infra.console import fail, silence_known_warnings
    from phyprompt.refiners import RefinerLoadError

    silence_known_warnings()
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
