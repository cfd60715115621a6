"""train.sft and train.export on a tiny random model: recipe → LoRA SFT → export → the refiner loads it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from phyprompt.language.contract import parse_output
from phyprompt.language.instruction import ASSISTANT_PREFIX
from phyprompt.refiners.local import LocalRefiner
from support.tiny_refiner import write_tiny_refiner
from train.data.schema import read_examples
from train.export import main as export_main
from train.sft import main as sft_main
from train.sft import parse, prompt_completion, run, training_tokens

ROOT = Path(__file__).resolve().parents[1]
SEED = str(ROOT / "train" / "data" / "seed_optics.jsonl")

RECIPE = """\
train_files: ["{data}"]
model_name_or_path: {model}
dtype: float32
use_peft: {peft}
lora_r: 4
lora_alpha: 8
lora_target_modules: all-linear
output_dir: {out}
use_cpu: true
bf16: false
max_steps: {steps}
per_device_train_batch_size: 2
learning_rate: 1.0e-3
max_length: 2048
logging_steps: 1
save_steps: 1
report_to: none
seed: 1
"""


def write_recipe(tmp_path: Path, model: str, out: Path, data: str = SEED, steps: int = 2, peft: str = "true",
                 extra: str = "") -> str:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format(data=data, model=model, out=out, steps=steps, peft=peft) + extra)
    return str(recipe)


def test_training_prompt_is_exactly_what_the_refiner_renders(tiny_refiner_dir):
    example = read_examples([SEED]).examples[0]
    refiner = LocalRefiner.load(tiny_refiner_dir, device="cpu")
    pair = prompt_completion(example, refiner.tokenizer)
    from phyprompt.language.targets import get_target

    rendered = refiner.render(example.user_prompt, get_target(example.target))
    assert pair["prompt"] == rendered
    assert pair["prompt"].endswith(ASSISTANT_PREFIX)
    assert pair["completion"].endswith(f"<prompt>{example.refined_prompt}</prompt>")
    # token for token what the refiner feeds the model, then the answer and EOS under the loss mask
    tokens = training_tokens(example, refiner.tokenizer)
    inference_ids = refiner.tokenizer(rendered, add_special_tokens=False)["input_ids"]
    prompt_length = tokens["completion_mask"].index(1)
    assert tokens["input_ids"][:prompt_length] == inference_ids
    assert set(tokens["completion_mask"][prompt_length:]) == {1}
    assert tokens["input_ids"][-1] == refiner.tokenizer.eos_token_id
    answer = refiner.tokenizer.decode(tokens["input_ids"][prompt_length:], skip_special_tokens=True)
    assert parse_output(ASSISTANT_PREFIX + answer).prompt == example.refined_prompt


class LabelProbe:
    """Records the labels of the first training batch."""

    labels = None

    def __getattr__(self, name):
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        LabelProbe.labels = next(iter(train_dataloader))["labels"]


def test_loss_is_on_the_answer_only(tmp_path, tiny_refiner_dir):
    out = tmp_path / "run"
    run(*parse(["--config", write_recipe(tmp_path, tiny_refiner_dir, out, steps=1)])[:3], callbacks=[LabelProbe()])
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_refiner_dir)
    for row in LabelProbe.labels.tolist():
        learned = [t for t in row if t != -100]
        assert row[0] == -100 and learned and learned[-1] == tokenizer.eos_token_id
        # the masked part is one prefix (the prompt; padding comes last), the answer the rest
        first = row.index(learned[0])
        assert all(t == -100 for t in row[:first])
        assert "</prompt>" in tokenizer.decode(learned)


def test_lora_sft_then_export_then_load(tmp_path, tiny_refiner_dir, capsys):
    data = tmp_path / "data.jsonl"
    lines = Path(SEED).read_text().splitlines()[:6]
    data.write_text("\n".join(lines[:3] + ['{"broken": '] + lines[3:]) + "\n")
    out = tmp_path / "run"
    assert sft_main(["--config", write_recipe(tmp_path, tiny_refiner_dir, out, data=str(data))]) == 0
    err = capsys.readouterr().err
    assert f"skipping bad row: {data}:4: not valid JSON" in err
    assert {"adapter_config.json", "adapter_model.safetensors", "loss.png", "phyprompt_training.json",
            "chat_template.jinja"} <= set(os.listdir(out))
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = json.loads((out / "phyprompt_training.json").read_text())
    assert manifest["examples"] == 6 and manifest["method"] == "LoRA" and manifest["training"]["max_steps"] == 2
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and all("loss" in e for e in state["log_history"][:2])

    merged = tmp_path / "models" / "LLM" / "tiny-sft"
    assert export_main(["--adapter", str(out), "--out", str(merged), "--dtype", "fp32"]) == 0
    card = (merged / "README.md").read_text()
    assert f"base_model: {tiny_refiner_dir}" in card and "Examples: 6" in card
    # the merged weights compute what base + adapter compute
    reference = LocalRefiner.load(tiny_refiner_dir, adapter=str(out), device="cpu")
    exported = LocalRefiner.load(str(merged), device="cpu")
    ids = torch.tensor([[5, 17, 42, 9, 3]])
    with torch.no_grad():
        torch.testing.assert_close(exported.model(ids).logits, reference.model(ids).logits, rtol=1e-4, atol=1e-4)
    assert exported.tokenizer.chat_template == reference.tokenizer.chat_template
    # and the refiner generates with it as with base + adapter (greedy, so the same tokens)
    prompt = "a spoon in a glass of water"
    assert exported.refine(prompt, "lavie", max_new_tokens=8)[0].raw == reference.refine(prompt, "lavie",
                                                                                          max_new_tokens=8)[0].raw

    # an existing model is never replaced silently
    assert export_main(["--adapter", str(out), "--out", str(merged)]) == 1
    assert "already holds files" in capsys.readouterr().err
    assert export_main(["--adapter", str(out), "--out", str(merged), "--keep-adapter", "--overwrite"]) == 0
    assert not (merged / "model.safetensors").exists() and (merged / "adapter_model.safetensors").exists()
    assert sorted(p.name for p in merged.parent.iterdir()) == ["tiny-sft"]  # no .partial or .replaced left
    kept = LocalRefiner.load(tiny_refiner_dir, adapter=str(merged), device="cpu")
    with torch.no_grad():
        torch.testing.assert_close(kept.model(ids).logits, reference.model(ids).logits)

    # a kept adapter in half precision (how the built-in refiner's adapter ships): half the bytes, same model
    half = tmp_path / "half"
    assert export_main(["--adapter", str(out), "--out", str(half), "--keep-adapter", "--dtype", "fp16"]) == 0
    weights = half / "adapter_model.safetensors"
    assert {t.dtype for t in load_file(weights).values()} == {torch.float16}
    assert weights.stat().st_size < 0.6 * (merged / "adapter_model.safetensors").stat().st_size
    halved = LocalRefiner.load(tiny_refiner_dir, adapter=str(half), device="cpu")
    with torch.no_grad():
        torch.testing.assert_close(halved.model(ids).logits, reference.model(ids).logits, atol=2e-3, rtol=2e-3)


def test_full_fine_tuning_and_export(tmp_path, tiny_refiner_dir):
    out = tmp_path / "full"
    assert sft_main(["--config", write_recipe(tmp_path, tiny_refiner_dir, out, steps=1, peft="false")]) == 0
    assert (out / "model.safetensors").exists() and not (out / "adapter_config.json").exists()
    target = tmp_path / "exported"
    assert export_main(["--adapter", str(out), "--out", str(target), "--dtype", "fp32"]) == 0
    trained = LocalRefiner.load(str(out), device="cpu").model.state_dict()
    for name, tensor in LocalRefiner.load(str(target), device="cpu").model.state_dict().items():
        torch.testing.assert_close(tensor, trained[name])
    assert export_main(["--adapter", str(out), "--out", str(tmp_path / "x"), "--keep-adapter"]) == 1
    assert export_main(["--adapter", str(out), "--out", str(out), "--overwrite"]) == 1  # never over the run
    assert (out / "model.safetensors").exists()
    assert f"base_model: {tiny_refiner_dir}" in (target / "README.md").read_text()  # from the run's manifest


class InterruptAfterSave:
    """Stands in for a kill: stops the run right after checkpoint `step` is written."""

    def __init__(self, step: int):
        self.step = step

    def __getattr__(self, name):  # every other TrainerCallback event is a no-op
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


def test_resume_after_an_interrupted_run(tmp_path, tiny_refiner_dir, capsys):
    out = tmp_path / "run"
    recipe = write_recipe(tmp_path, tiny_refiner_dir, out, steps=4)
    with pytest.raises(KeyboardInterrupt):
        run(*parse(["--config", recipe])[:3], callbacks=[InterruptAfterSave(2)])
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    assert not (out / "adapter_model.safetensors").exists()
    # a kill in the middle of writing checkpoint-3 leaves it without trainer_state.json (written last)
    shutil.copytree(out / "checkpoint-2", out / "checkpoint-3")
    (out / "checkpoint-3" / "trainer_state.json").unlink()

    assert sft_main(["--config", recipe]) == 0
    assert f"resuming from {out / 'checkpoint-2'}" in capsys.readouterr().err
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    logged_steps = [e["step"] for e in state["log_history"] if "loss" in e]
    assert logged_steps == [1, 2, 3, 4]  # steps 1-2 come from the interrupted run, 3-4 from the resumed one
    assert (out / "adapter_model.safetensors").exists()

    # resume_from_checkpoint: false starts over instead
    assert sft_main(["--config", recipe, "--resume_from_checkpoint", "false", "--max_steps", "1"]) == 0
    assert "resuming" not in capsys.readouterr().err


def test_bad_recipes_and_base_models(tmp_path, tiny_refiner_dir, capsys):
    out = tmp_path / "run"
    assert sft_main(["--config", write_recipe(tmp_path, tiny_refiner_dir, out, extra="learning_rat: 0.1\n")]) == 1
    message = capsys.readouterr().err
    assert "Unknown arguments" in message and "learning_rat" in message
    assert sft_main(["--config", str(tmp_path / "missing.yaml")]) == 1
    assert "recipe not found" in capsys.readouterr().err

    no_template = write_tiny_refiner(tmp_path / "base-model", chat_template=None)
    assert sft_main(["--config", write_recipe(tmp_path, str(no_template), out)]) == 1
    message = capsys.readouterr().err
    assert "has no chat template" in message and "chat_template_path" in message

    template = tmp_path / "template.jinja"
    template.write_text(LocalRefiner.load(tiny_refiner_dir, device="cpu").tokenizer.chat_template)
    recipe = write_recipe(tmp_path, str(no_template), out, steps=1, extra=f"chat_template_path: {template}\n")
    assert sft_main(["--config", recipe]) == 0
    assert (out / "chat_template.jinja").read_text() == template.read_text()

    assert sft_main(["--config", write_recipe(tmp_path, str(tmp_path / "nowhere"), out)]) == 1
    assert "train.sft: error:" in capsys.readouterr().err
    assert sft_main(["--config", write_recipe(tmp_path, str(tmp_path / "smol.gguf"), out)]) == 1
    assert "convert it to a model folder first with python -m train.gguf_import" in capsys.readouterr().err
    assert sft_main(["--config", write_recipe(tmp_path, tiny_refiner_dir, out, data=str(tmp_path / "*.none"))]) == 1
    assert "no data file matches" in capsys.readouterr().err
    assert sft_main(["--config", write_recipe(tmp_path, tiny_refiner_dir, out, data=str(tmp_path / "typo.jsonl"))]) == 1
    assert "data file not found" in capsys.readouterr().err

    for extra, message in (("eval_strategy: epoch\n", "eval_fraction is 0"),
                           ("eval_fraction: 1.5\n", "eval_fraction must be"),
                           ("trust_remote_code: true\n", "trust_remote_code is not allowed"),
                           ("resume_from_checkpoint: true\n", "has no checkpoint"),
                           ("max_steps: [1\n", "recipe.yaml")):
        assert sft_main(["--config", write_recipe(tmp_path, tiny_refiner_dir, tmp_path / "new", extra=extra)]) == 1
        assert message in capsys.readouterr().err, extra
    assert sft_main(["--max_steps", "1", "--config"]) == 1
    assert "--config needs a recipe file" in capsys.readouterr().err


SFT_RECIPES = sorted(p for p in (ROOT / "train" / "recipes").glob("*.yaml") if "-grpo" not in p.stem)


def test_an_error_is_its_one_line_without_the_libraries_notices(tmp_path):
    """trl's SFTConfig sets gradient_checkpointing, which transformers 5 deprecates: a notice the user can do
    nothing about, printed before every error and run until the command line silenced it."""
    recipe = write_recipe(tmp_path, str(tmp_path / "nowhere"), tmp_path / "out")
    run = subprocess.run([sys.executable, "-m", "train.sft", "--config", recipe], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 1
    assert run.stderr.splitlines() == [f"train.sft: error: refiner folder not found: {tmp_path}/nowhere"], run.stderr


@pytest.mark.parametrize("recipe", SFT_RECIPES, ids=lambda p: p.name)
def test_shipped_recipes_parse(recipe):
    # GPU recipes ask for bf16, which transformers refuses on a machine without a GPU: run them as CPU ones
    data_args, training_args, model_args, _ = parse(["--config", str(recipe), "--bf16", "false", "--use_cpu", "true"])
    assert model_args.model_name_or_path and training_args.output_dir.startswith("runs/")
    # the built-in's recipe trains on the cue set, made for a 135M model; the real bases on the seed set
    expected = "cue" if "smollm2" in recipe.name else "seed"
    assert data_args.train_files == [f"train/data/{expected}_*.jsonl"] and model_args.use_peft
    assert training_args.report_to in ([], "none", ["none"])


@pytest.mark.parametrize("config", sorted((ROOT / "train" / "accelerate").glob("*.yaml")), ids=lambda p: p.name)
def test_accelerate_configs_load(config):
    from accelerate.commands.config.config_args import load_config_from_file

    loaded = load_config_from_file(str(config))
    assert str(loaded.distributed_type).rsplit(".", 1)[-1] in {"MULTI_GPU", "DEEPSPEED", "FSDP"}
    assert loaded.mixed_precision == ("no" if config.name == "cpu.yaml" else "bf16")  # CPUs: fp32
