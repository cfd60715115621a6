"""`python -m phyprompt refine` end to end, as a user runs it."""

import json
import subprocess
import sys

import pytest

from conftest import REPO
from support.tiny_refiner import TRAINED_PROMPT, TRAINED_REASONING


def phyprompt(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "phyprompt", *args], cwd=REPO, input=stdin,
                          capture_output=True, text=True, timeout=300)


def test_refine_one_prompt_prints_the_refined_prompt(trained_refiner_dir):
    run = phyprompt("refine", "a cat jumps onto a table", "--model", trained_refiner_dir, "--max-new-tokens", "80")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == TRAINED_PROMPT
    assert "refining" in run.stderr  # the tqdm bar
    assert "/226 tokens for cogvideox" in run.stderr


def test_refine_json(trained_refiner_dir):
    run = phyprompt("refine", "a cat jumps", "--model", trained_refiner_dir, "--target", "lavie",
                    "--max-new-tokens", "80", "--json", "--seed", "4", "--temperature", "0")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["ok"] and result["prompt"] == TRAINED_PROMPT and result["reasoning"] == TRAINED_REASONING
    assert result["target"] == "lavie" and result["token_limit"] == 77 and result["tokens"] > 0
    assert result["original"] == "a cat jumps" and "report" in result


def test_refine_file_writes_jsonl_in_order(tiny_refiner_dir, tmp_path):
    lines = ["a cat jumps", "", "water pours into a glass", "  ", "a ball rolls", "ice melts", "a rope swings"]
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(lines), encoding="utf-8")
    run = phyprompt("refine", "--file", str(prompts), "--model", tiny_refiner_dir, "--max-new-tokens", "6",
                    "--batch-size", "2", "--temperature", "1.0", "--seed", "7")
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["original"] for r in rows] == [line for line in lines if line.strip()]
    # line i is refined with seed + i whatever the batching: the third prompt alone with seed 9 matches
    alone = phyprompt("refine", "a ball rolls", "--model", tiny_refiner_dir, "--max-new-tokens", "6",
                      "--temperature", "1.0", "--seed", "9", "--json", "--quiet")
    assert json.loads(alone.stdout)["raw"] == rows[2]["raw"]


def test_refine_stdin(tiny_refiner_dir):
    run = phyprompt("refine", "--file", "-", "--model", tiny_refiner_dir, "--max-new-tokens", "4", "--quiet",
                    stdin="a cat jumps\n猫が跳ぶ 🐱\n")
    assert run.returncode == 0, run.stderr
    assert [json.loads(line)["original"] for line in run.stdout.splitlines()] == ["a cat jumps", "猫が跳ぶ 🐱"]
    assert "refining" not in run.stderr and "Loading weights" not in run.stderr  # --quiet: no bars at all


@pytest.mark.parametrize("args, message", [
    (["refine", "a cat", "--temperature", "-1"], "--temperature: must be 0 (greedy) or more"),
    (["refine", "a cat", "--max-new-tokens", "0"], "--max-new-tokens: must be at least 1"),
    (["refine", "a cat", "--target", "sora"], "invalid choice: 'sora'"),
    (["refine"], "one of the arguments prompt --file is required"),
    (["refine", "a cat", "--file", "x.txt"], "not allowed with argument"),
])
def test_bad_arguments_exit_2_with_one_line(args, message):
    run = phyprompt(*args)
    assert run.returncode == 2
    assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("make_args, message", [
    (lambda tmp: ["refine", "a cat", "--model", str(tmp / "nope")], "refiner folder not found"),
    (lambda tmp: ["refine", "   ", "--model", str(tmp)], "the prompt is empty"),
    (lambda tmp: ["refine", "--file", str(tmp / "missing.txt")], "cannot read"),
    (lambda tmp: ["refine", "--file", str(tmp), "--model", str(tmp)], "cannot read"),
])
def test_bad_input_exits_1_with_one_line(tmp_path, make_args, message):
    run = phyprompt(*make_args(tmp_path))
    assert run.returncode == 1
    assert run.stderr.strip().startswith("phyprompt: error:") and message in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_empty_file(tmp_path):
    (tmp_path / "blank.txt").write_text("\n  \n")
    run = phyprompt("refine", "--file", str(tmp_path / "blank.txt"), "--model", str(tmp_path))
    assert run.returncode == 1 and "holds no prompts" in run.stderr


def test_help_lists_targets():
    run = phyprompt("refine", "--help")
    assert run.returncode == 0
    for target in ("cogvideox", "videocrafter2", "lavie", "generic"):
        assert target in run.stdout


def test_refine_file_reads_any_prompt_list_format(tiny_refiner_dir, tmp_path):
    table = tmp_path / "prompts.csv"
    table.write_text("id,caption\n1,a cat jumps\n2,\n3,ice melts\n", encoding="utf-8-sig")
    run = phyprompt("refine", "--file", str(table), "--model", tiny_refiner_dir, "--max-new-tokens", "4", "--quiet")
    assert run.returncode == 0, run.stderr
    assert [json.loads(line)["original"] for line in run.stdout.splitlines()] == ["a cat jumps", "ice melts"]
    (tmp_path / "bad.jsonl").write_text('"a cat jumps"\n{"prompt": \n')
    run = phyprompt("refine", "--file", str(tmp_path / "bad.jsonl"), "--model", tiny_refiner_dir)
    assert run.returncode == 1 and "bad.jsonl:2: not valid JSON" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
