"""Stage 2: GRPO with the semantic → physics reward curriculum.

    python -m train.grpo --config train/recipes/<recipe>-grpo.yaml [--any_option value ...]
    accelerate launch --config_file train/accelerate/zero2.yaml -m train.grpo --config …

The recipe is read by trl's `TrlParser` into `DataArguments` (the prompts: the user prompts and targets of
the training files), `RewardArguments` (train/rewards), `CurriculumArguments` (below), trl's `GRPOConfig` and
`ModelConfig`. The policy starts from the stage-1 result: an exported SFT model as `model_name_or_path`, or
the base model plus `sft_adapter` (the SFT run's LoRA adapter, merged into the base first). With
`use_peft: true` a fresh LoRA is trained on top and the KL reference (β > 0) is that SFT model with the
adapter off — KL to the SFT model, as in the paper.

The prompt of every rollout is exactly what the refiner sees at inference (the project's instruction in
the chat template, then the assistant prefix), so a trained policy needs nothing new at inference. The
paper's settings are the recipes' defaults: G = 4 rewrites per prompt (num_generations), clip ε = 0.2,
β > 0, advantage = reward − group mean (`scale_rewards: none`), and R(t) = w_sa(t)·r_sa + w_pc(t)·r_pc with
w_sa(t) = exp(−α·t/T) beside constant format and budget terms.

Checkpoints go to `output_dir/checkpoint-N`; a rerun resumes from the last complete one (weights, optimizer,
step, and the data order in any epoch, see `EpochOrder`; the curriculum is a function of the step), bitwise
as if never stopped. At the end the adapter (or model), the tokenizer, `phyprompt_training.json` (stage 2
and the stage-1 manifest it started from, for `train.export`'s model card) and `rewards.png` are written to
`output_dir`.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field

import torch
from torch.utils.data import Sampler

from .curriculum import SCHEDULES, CurriculumCallback
from .rewards import REWARDS, RewardArguments, build_reward
from .stages import (DataArguments, TrainingSetupError, base_model, load_training_examples, parse_recipe, read_manifest,
                     resume_point, use_chat_template, write_manifest)

GRPO_SETTINGS = ("max_steps", "num_train_epochs", "learning_rate", "per_device_train_batch_size",
                 "gradient_accumulation_steps", "num_generations", "epsilon", "beta", "scale_rewards",
                 "loss_type", "temperature", "max_completion_length", "seed")


@dataclass
class CurriculumArguments:
    sft_adapter: str | None = field(
        default=None, metadata={"help": "the stage-1 LoRA adapter folder (train.sft output_dir); merged into "
                                        "model_name_or_path before GRPO. Leave out when model_name_or_path is "
                                        "already the exported SFT model"})
    curriculum: str = field(default="exp", metadata={"help": "schedule: " + ", ".join(SCHEDULES)})
    curriculum_sa: str = field(default="video_sa", metadata={"help": "the reward w_sa weighs (semantic fidelity)"})
    curriculum_pc: str = field(default="video_pc", metadata={"help": "the reward w_pc weighs (physics)"})
    alpha: float = field(default=3.0, metadata={"help": "exp schedule: w_sa(t) = exp(-alpha*t/T)"})
    static_sa_weight: float = field(default=0.5, metadata={"help": "static schedule: w_sa throughout"})
    step_at: float = field(default=0.5, metadata={"help": "step schedule: the share of T where w_sa drops to 0"})


def prompt_rows(examples, tokenizer) -> list[dict]:
    """One rollout prompt per distinct (user prompt, target), rendered as the refiner renders it."""
    from phyprompt.language.instruction import build_messages, render_prompt

    rows, seen = [], set()
    for example in examples:
        if (example.user_prompt, example.target) in seen:
            continue
        seen.add((example.user_prompt, example.target))
        rows.append({"prompt": render_prompt(tokenizer, build_messages(example.user_prompt, example.target)),
                     "original_prompt": example.user_prompt, "target": example.target})
    return rows


def check_rewards(rewards: RewardArguments, curriculum: CurriculumArguments, training_args) -> None:
    """Everything about the rewards that can be wrong, before any model loads."""
    unknown = [name for name in rewards.rewards if name not in REWARDS]
    if unknown:
        raise TrainingSetupError(f"unknown reward {unknown[0]!r}; choose one of: {', '.join(REWARDS.names())}")
    if curriculum.curriculum not in SCHEDULES:
        raise TrainingSetupError(f"unknown curriculum {curriculum.curriculum!r}; choose one of: {', '.join(SCHEDULES)}")
    for role in ("curriculum_sa", "curriculum_pc"):
        if getattr(curriculum, role) not in rewards.rewards:
            raise TrainingSetupError(f"{role} is {getattr(curriculum, role)!r}, which is not among the recipe's "
                                     f"rewards ({', '.join(rewards.rewards)})")
    if curriculum.curriculum_sa == curriculum.curriculum_pc:
        raise TrainingSetupError("curriculum_sa and curriculum_pc name the same reward")
    weights = training_args.reward_weights
    if weights is not None and len(weights) != len(rewards.rewards):
        raise TrainingSetupError(f"reward_weights has {len(weights)} values for {len(rewards.rewards)} rewards")


def check_sft_adapter(curriculum: CurriculumArguments) -> None:
    if curriculum.sft_adapter and not os.path.isfile(os.path.join(curriculum.sft_adapter, "adapter_config.json")):
        raise TrainingSetupError(f"sft_adapter {curriculum.sft_adapter} is not a stage-1 adapter folder (no "
                                 "adapter_config.json): give train.sft's output_dir, or leave sft_adapter out and "
                                 "set model_name_or_path to the exported SFT model")


def policy(model_args, curriculum: CurriculumArguments, init: dict):
    """What GRPOTrainer starts from: the model's name (trl loads it) or, with `sft_adapter`, the base with
    the stage-1 adapter merged in."""
    if not curriculum.sft_adapter:
        return model_args.model_name_or_path
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_args.model_name_or_path, **init)
    return PeftModel.from_pretrained(base, curriculum.sft_adapter).merge_and_unload()


class EpochOrder(Sampler):
    """trl's RepeatSampler with each epoch's prompt order a pure function of (seed, epoch).

    trl's sampler seeds its generator once and draws a permutation at every pass, so epoch e's order is the
    (e+1)-th draw of a process that ran epochs 0..e-1. A resumed process builds a fresh sampler, and
    transformers only skips the trained batches of the epoch it resumes in (`Trainer._run_epoch`), so a run
    resumed in epoch e > 0 trained the rest of it on epoch 0's order, and every later epoch on another's.
    Here the generator is reseeded before every pass and the draws of the epochs before are repeated: epoch
    e gets the order an uninterrupted run gives it, whatever this process ran before. The repeats inside an
    epoch (each prompt num_generations times, each generation batch num_iterations × steps_per_generation
    times) stay trl's."""

    def __init__(self, sampler):
        self.sampler = sampler  # trl.trainer.utils.RepeatSampler
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by transformers before every epoch, the resumed one included."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        if self.sampler.shuffle:
            self.sampler.generator.manual_seed(self.sampler.seed)
            for _ in range(self.epoch):
                torch.randperm(self.sampler.num_samples, generator=self.sampler.generator)
        return iter(self.sampler)


def grpo_trainer():
    """trl's GRPOTrainer with its prompts in `EpochOrder`, so a run resumed in any epoch is the uninterrupted
    run (trl is imported only when training starts)."""
    from trl import GRPOTrainer

    class EpochOrderGRPOTrainer(GRPOTrainer):
        def _get_train_sampler(self, dataset=None):
            self._epoch_order = EpochOrder(super()._get_train_sampler(dataset))
            return self._epoch_order

        def get_train_dataloader(self):
            dataloader = super().get_train_dataloader()
            # On several processes accelerate puts a BatchSamplerShard above the sampler, and in a run resumed
            # inside an epoch the loader that skips the trained batches forwards set_epoch only to the shard's
            # `sampler` attribute, which accelerate sets (set_sampler) for its own seedable sampler alone.
            dataloader.set_sampler(self._epoch_order)
            return dataloader

    return EpochOrderGRPOTrainer


def run(data_args: DataArguments, rewards: RewardArguments, curriculum: CurriculumArguments, training_args,
        model_args, recipe: str | None = None, callbacks=()) -> dict:
    """Train as the configs say; returns the final metrics."""
    from datasets import Dataset
    from trl import get_peft_config

    from phyprompt.infra.console import first_line

    from .plot import plot_rewards

    check_rewards(rewards, curriculum, training_args)
    check_sft_adapter(curriculum)
    data_files, examples = load_training_examples(data_args)
    tokenizer, init = base_model(model_args, training_args)
    use_chat_template(tokenizer, model_args.model_name_or_path, None)  # GRPOConfig has no chat_template_path
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dataset = Dataset.from_list(prompt_rows(examples, tokenizer))

    try:
        reward_funcs = [build_reward(name, rewards) for name in rewards.rewards]
    except ValueError as error:  # a reward's models are missing or unusable
        raise TrainingSetupError(str(error)) from None
    schedule = CurriculumCallback(rewards.rewards.index(curriculum.curriculum_sa),
                                  rewards.rewards.index(curriculum.curriculum_pc), curriculum.curriculum,
                                  **_schedule_options(curriculum))
    model = policy(model_args, curriculum, init)
    if isinstance(model, str):
        training_args.model_init_kwargs = init
    trainer_class = grpo_trainer()
    try:
        trainer = trainer_class(model=model, reward_funcs=reward_funcs, args=training_args, train_dataset=dataset,
                                processing_class=tokenizer, peft_config=get_peft_config(model_args),
                                callbacks=[schedule, *callbacks])
    except (OSError, ImportError) as error:
        raise TrainingSetupError(f"could not load {model_args.model_name_or_path}: {first_line(error)}") from error
    schedule.trainer = trainer
    checkpoint = resume_point(training_args)
    if checkpoint:
        print(f"train.grpo: resuming from {checkpoint}", file=sys.stderr)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    metrics = dict(result.metrics)
    trainer.save_model(training_args.output_dir)
    trainer.save_state()  # trainer_state.json beside the model: the curves the ablation runner draws
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(training_args.output_dir)
        plot_rewards(trainer.state.log_history, rewards.rewards, os.path.join(training_args.output_dir, "rewards.png"),
                     title=f"GRPO of {os.path.basename(os.path.normpath(model_args.model_name_or_path))}")
        stage1 = read_manifest(curriculum.sft_adapter or model_args.model_name_or_path)
        weights = training_args.reward_weights or [1.0] * len(rewards.rewards)
        extra = {
            "starts_from": curriculum.sft_adapter or model_args.model_name_or_path,
            # train.export merges this stage-1 adapter into the base before this run's adapter
            "sft_adapter": os.path.abspath(curriculum.sft_adapter) if curriculum.sft_adapter else None,
            "stage1": stage1,
            "rewards": {name: ("curriculum" if name in (curriculum.curriculum_sa, curriculum.curriculum_pc) else w)
                        for name, w in zip(rewards.rewards, weights)},
            "curriculum": {"schedule": curriculum.curriculum, "sa": curriculum.curriculum_sa,
                           "pc": curriculum.curriculum_pc, **_schedule_options(curriculum)},
        }
        write_manifest(training_args.output_dir, recipe, data_files, examples, model_args, training_args, metrics,
                       stage="grpo", extra=extra, settings=GRPO_SETTINGS)
    return metrics


def _schedule_options(curriculum: CurriculumArguments) -> dict:
    return {"exp": {"alpha": curriculum.alpha}, "static": {"static_sa_weight": curriculum.static_sa_weight},
            "step": {"step_at": curriculum.step_at}}.get(curriculum.curriculum, {})


def parse(argv=None):
    from trl import GRPOConfig, ModelConfig

    (data_args, rewards, curriculum, training_args, model_args), recipe = parse_recipe(
        argv, (DataArguments, RewardArguments, CurriculumArguments, GRPOConfig, ModelConfig),
        "train/recipes/smollm2-135m-grpo-cpu.yaml")
    check_rewards(rewards, curriculum, training_args)
    return data_args, rewards, curriculum, training_args, model_args, recipe


def main(argv=None) -> int:
    from phyprompt.infra.console import fail, silence_known_warnings
    from phyprompt.refiners import RefinerLoadError

    silence_known_warnings()
    try:
        *configs, recipe = parse(argv)
        metrics = run(*configs, recipe)
    except (TrainingSetupError, RefinerLoadError) as error:
        return fail(str(error), prog="train.grpo")
    except KeyboardInterrupt:
        return fail("interrupted; run the same command again to resume from the last checkpoint", prog="train.grpo")
    print(json.dumps({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, indent=2))
    print(f"train.grpo: wrote {configs[3].output_dir} (reward curves: rewards.png)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
