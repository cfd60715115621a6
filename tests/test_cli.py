"""`python -m phyprompt refine` end to end, as a user runs it."""

import json
import os
import shutil
import socket
import subprocess
import sys
import warnings

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
    assert run.returncode == 3, run.stderr  # the untrained model never finishes a prompt in 6 tokens
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["original"] for r in rows] == [line for line in lines if line.strip()]
    # line i is refined with seed + i whatever the batching: the third prompt alone with seed 9 matches
    alone = phyprompt("refine", "a ball rolls", "--model", tiny_refiner_dir, "--max-new-tokens", "6",
                      "--temperature", "1.0", "--seed", "9", "--json", "--quiet")
    assert json.loads(alone.stdout)["raw"] == rows[2]["raw"]


def test_refine_stdin(tiny_refiner_dir):
    run = phyprompt("refine", "--file", "-", "--model", tiny_refiner_dir, "--max-new-tokens", "4", "--quiet",
                    stdin="a cat jumps\n猫が跳ぶ 🐱\n")
    assert run.returncode == 3, run.stderr
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
    assert run.stderr.strip().startswith("phyprompt refine: error:") and message in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_a_prompt_file_that_is_not_text_is_refused_naming_the_line(tmp_path):
    (tmp_path / "prompts.txt").write_bytes(b"a cat jumps\nwater\x00 pours\n")
    run = phyprompt("refine", "--file", str(tmp_path / "prompts.txt"), "--model", str(tmp_path))
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.splitlines() == [
        f"phyprompt refine: error: {tmp_path}/prompts.txt:2: U+0000 (NUL) at column 6; prompt, caption and training "
        "files must be plain text: delete the character"]


def test_the_libraries_notices_about_each_other_are_not_printed(tiny_refiner_dir, tiny_adapter_dir):
    """peft asks the model for is_gradient_checkpointing, which transformers 5 deprecates: not the user's business."""
    run = phyprompt("refine", "a cat jumps", "--model", tiny_refiner_dir, "--adapter", tiny_adapter_dir,
                    "--max-new-tokens", "4", "--quiet")
    assert run.returncode == 3 and "Warning" not in run.stderr, run.stderr


def test_only_the_known_notices_are_silenced():
    from phyprompt.infra.console import silence_known_warnings

    known = "`gradient_checkpointing` is deprecated and will be removed in v6. Use `activation_checkpointing` instead."
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_known_warnings()
        for message, category, module in [
            (known, FutureWarning, "transformers.training_args"),  # silenced
            ("`is_gradient_checkpointing` is deprecated and will be removed in v6. Use `is_activation_checkpointing` "
             "instead.", FutureWarning, "transformers.modeling_utils"),  # silenced
            (known, FutureWarning, "some_plugin"),  # the same words from elsewhere
            (known, DeprecationWarning, "transformers.training_args"),  # another category
            ("`torch_dtype` is deprecated and will be removed in v6. Use `dtype` instead.", FutureWarning,
             "transformers.modeling_utils"),  # another notice of the same module
        ]:
            warnings.warn_explicit(message, category, "x.py", 1, module=module)
    assert [(str(w.message)[:12], w.category) for w in caught] == [
        (known[:12], FutureWarning), (known[:12], DeprecationWarning), ("`torch_dtype", FutureWarning)]


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
    assert run.returncode == 3, run.stderr
    assert [json.loads(line)["original"] for line in run.stdout.splitlines()] == ["a cat jumps", "ice melts"]
    (tmp_path / "bad.jsonl").write_text('"a cat jumps"\n{"prompt": \n')
    run = phyprompt("refine", "--file", str(tmp_path / "bad.jsonl"), "--model", tiny_refiner_dir)
    assert run.returncode == 1 and "bad.jsonl:2: not valid JSON" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


# --- start-up: --help and argument errors answer without torch ----------------------------------------

HEAVY = ("torch", "transformers", "diffusers")
# runs the command line as `python -m phyprompt` does, then reports which heavy packages got imported
_REPORT_IMPORTS = f"""
import sys
from phyprompt import cli
try:
    status = cli.main(sys.argv[1:])
except SystemExit as exit:
    status = exit.code
print(sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r})), status, file=sys.stderr)
"""


@pytest.mark.parametrize("args, status", [
    (["--help"], 0),
    (["refine", "--help"], 0),
    (["generate", "--help"], 0),
    (["refine", "a cat", "--temperature", "-1"], 2),  # argparse's own check
    (["generate", "a cat", "--model", "x", "--compare"], 2),  # options that do not go together
    (["render"], 2),
])
def test_help_and_argument_errors_do_not_import_torch(args, status):
    run = subprocess.run([sys.executable, "-c", _REPORT_IMPORTS, *args], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert run.stderr.splitlines()[-1] == f"[] {status}", run.stderr
    if status == 0:
        assert "exit status:" in run.stdout and "130  cancelled" in run.stdout


# --- exit status: the table in the docstring, the help and the README, one test per code -------------------

def test_exit_status_table_is_documented():
    from phyprompt import cli
    from phyprompt.cli import EXIT_STATUS

    codes = [line.split()[0] for line in EXIT_STATUS.splitlines()[1:] if line[:5].strip().isdigit()]
    assert codes == ["0", "1", "2", "3", "130"]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Command line"):]
    section = section[:section.index("\n## ", 3)]
    for code in codes:
        assert f"| {code} " in section, f"README's Command line section has no row for exit status {code}"
        assert f"\n    {code} " in cli.__doc__, f"phyprompt/cli.py's docstring has no row for exit status {code}"


# exit status 0: test_refine_one_prompt_prints_the_refined_prompt, test_refine_json, and (one prompt refined,
# one fallen back) tests/test_api_refiner.py's test_cli_exit_status_with_a_fallback_among_refined_prompts


@pytest.mark.parametrize("output", [[], ["--json"], ["--file"]])
def test_exit_status_3_when_every_prompt_fell_back(tiny_refiner_dir, tmp_path, output):
    if output == ["--file"]:
        (tmp_path / "prompts.txt").write_text("a cat jumps\nice melts\n", encoding="utf-8")
        source = ["--file", str(tmp_path / "prompts.txt")]
    else:
        source = ["a cat jumps", *output]
    run = phyprompt("refine", *source, "--model", tiny_refiner_dir, "--max-new-tokens", "4", "--quiet")
    assert run.returncode == 3, run.stderr
    # the output is printed all the same: usable prompts (the originals)
    if output:
        rows = [json.loads(line) for line in run.stdout.splitlines()]
        assert rows and not any(row["ok"] for row in rows)
        assert all(row["prompt"] == row["original"] for row in rows)
        some = f"all {len(rows)} prompts" if len(rows) > 1 else "the prompt"
    else:
        assert run.stdout.strip() == "a cat jumps"
        some = "the prompt"
    assert run.stderr.strip().splitlines()[-1] == (
        f"phyprompt: warning: nothing was refined: {some} fell back to the original (exit status 3)")


def test_exit_status_130_when_cancelled(tiny_refiner_dir, monkeypatch, capsys):
    from phyprompt import cli
    from phyprompt.infra.progress import TqdmProgress

    def interrupt(self, done, total):  # Ctrl+C during the first generated token
        raise KeyboardInterrupt

    monkeypatch.setattr(TqdmProgress, "__call__", interrupt)
    assert cli.main(["refine", "a cat jumps", "--model", tiny_refiner_dir, "--max-new-tokens", "8"]) == 130
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.strip().splitlines()[-1] == "phyprompt: cancelled"


# exit status 1 and 2: test_bad_input_exits_1_with_one_line, test_bad_arguments_exit_2_with_one_line, and
# tests/test_cli_generate.py's ERRORS (settings the video model cannot render are bad arguments too)


# --- model names: a path is never looked for on the hub; an unreachable hub is one line, at once ---------

def phyprompt_in(cwd, *args, env=None):
    """`python -m phyprompt` run from another folder, as an installed package is."""
    env = os.environ | {"PYTHONPATH": str(REPO)} | (env or {})
    return subprocess.run([sys.executable, "-m", "phyprompt", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("model, message", [
    # looks like a hub id (owner/name), but models/ is a folder here: a typo'd path, not a download
    ("models/SmolLM2", "refiner folder not found: models/SmolLM2 (no such folder; models/ is a folder here, so it "
                       "is read as a path, not as a Hugging Face hub id); give --model an existing folder or .gguf "
                       "file, a hub id such as Qwen/Qwen2.5-1.5B-Instruct, or use the built-in refiner (leave out "
                       "--model)"),
    ("./SmolLM2", "refiner folder not found: ./SmolLM2 (no such folder)"),
    ("~/phyprompt-no-such-folder/SmolLM2", "refiner folder not found: "),
    ("smollm2-135m.Q8_0.gguf", "GGUF file not found: smollm2-135m.Q8_0.gguf (no such file)"),
])
def test_a_missing_path_is_not_looked_for_on_the_hub(tmp_path, model, message):
    (tmp_path / "models").mkdir()
    # HF_ENDPOINT: a hub that would answer nothing, so a lookup could not succeed by accident
    run = phyprompt_in(tmp_path, "refine", "a cat", "--model", model, env={"HF_ENDPOINT": "http://127.0.0.1:9"})
    assert run.returncode == 1, run.stderr
    assert run.stderr.strip().splitlines() == [run.stderr.strip()]  # one line
    assert run.stderr.startswith("phyprompt refine: error: " + message), run.stderr
    assert "hub (" not in run.stderr and "Traceback" not in run.stderr


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


HUB_ID = "phyprompt-tests/no-such-refiner"
NEXT_STEPS = ("; use --model DIR (a local folder or .gguf file) or the built-in refiner (leave out --model), or ")


def test_a_hub_id_with_HF_HUB_OFFLINE_and_no_cached_copy_is_one_line(tmp_path):
    run = phyprompt_in(tmp_path, "refine", "a cat", "--model", HUB_ID,
                       env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert run.returncode == 1, run.stderr
    assert run.stderr.splitlines() == [
        f"phyprompt refine: error: could not load refiner {HUB_ID}: HF_HUB_OFFLINE is set and it is not in the local "
        f"Hugging Face cache{NEXT_STEPS}unset HF_HUB_OFFLINE to download it"]


def test_an_unreachable_hub_is_one_line_without_retries(tmp_path):
    # a hub address where nothing listens; the subprocess timeout (120 s) bounds any retrying
    endpoint = f"http://127.0.0.1:{closed_port()}"
    run = phyprompt_in(tmp_path, "refine", "a cat", "--model", HUB_ID,
                       env={"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0", "HF_ENDPOINT": endpoint,
                            "HF_HOME": str(tmp_path / "hf")})
    assert run.returncode == 1, run.stderr
    assert run.stderr.splitlines() == [
        f"phyprompt refine: error: could not load refiner {HUB_ID}: the Hugging Face hub ({endpoint}) does not answer "
        f"and it is not in the local Hugging Face cache{NEXT_STEPS}download it where the hub answers (hf download "
        f"{HUB_ID}) and run with HF_HUB_OFFLINE=1"]


@pytest.mark.parametrize("offline", ["1", "0"])
def test_a_cached_hub_id_loads_without_the_hub(trained_refiner_dir, tmp_path, offline):
    """HF_HUB_OFFLINE, or a hub that does not answer: the copy in the Hugging Face cache is used."""
    home = tmp_path / "hf"
    repo = home / "hub" / ("models--" + HUB_ID.replace("/", "--"))
    commit = "0" * 40
    shutil.copytree(trained_refiner_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    env = {"HF_HOME": str(home), "HF_HUB_OFFLINE": offline, "TRANSFORMERS_OFFLINE": offline,
           "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}
    run = phyprompt_in(tmp_path, "refine", "a cat jumps onto a table", "--model", HUB_ID, "--max-new-tokens", "80",
                       "--quiet", env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == TRAINED_PROMPT


# --- progress output -------------------------------------------------------------------------------------

def shown_lines(stderr: str) -> list[str]:
    """What a terminal shows of stderr: of each line, the text after its last carriage return (tqdm redraws
    its bar in place with \\r and wipes it with \\r, spaces, \\r)."""
    return [line.rsplit("\r", 1)[-1].rstrip() for line in stderr.split("\n")]


def test_the_report_is_on_its_own_line_after_the_bar(trained_refiner_dir):
    run = phyprompt("refine", "a cat jumps onto a table", "--model", trained_refiner_dir, "--max-new-tokens", "80")
    assert run.returncode == 0, run.stderr
    assert "refining" in run.stderr and "tok/s" in run.stderr  # the bar drew, counting one prompt's tokens
    [report] = [line for line in shown_lines(run.stderr) if "tokens for cogvideox" in line]
    assert report.startswith("[") and report.endswith("refined]")


def test_a_batch_bar_counts_steps_not_tokens(tiny_refiner_dir, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat jumps\nice melts\nwater pours\n", encoding="utf-8")
    run = phyprompt("refine", "--file", str(prompts), "--model", tiny_refiner_dir, "--max-new-tokens", "6",
                    "--batch-size", "2")
    assert run.returncode == 3, run.stderr
    assert "step/s" in run.stderr and "tok/s" not in run.stderr  # a step is a token of each prompt of a batch
    reports = [line for line in shown_lines(run.stderr) if "tokens for cogvideox" in line]
    assert len(reports) == 3 and all(line.startswith("[") for line in reports)
    # one prompt at a time: the bar counts that prompt's tokens
    run = phyprompt("refine", "--file", str(prompts), "--model", tiny_refiner_dir, "--max-new-tokens", "6",
                    "--batch-size", "1")
    assert "tok/s" in run.stderr and "step/s" not in run.stderr


def test_the_libraries_own_bars_show_only_with_verbose(tiny_refiner_dir):
    quiet = phyprompt("refine", "a cat jumps", "--model", tiny_refiner_dir, "--max-new-tokens", "4")
    verbose = phyprompt("refine", "a cat jumps", "--model", tiny_refiner_dir, "--max-new-tokens", "4", "--verbose")
    assert quiet.returncode == verbose.returncode == 3, quiet.stderr + verbose.stderr  # the tiny model: fallback
    assert "Loading weights" in verbose.stderr and "Loading weights" not in quiet.stderr
    assert "refining" in quiet.stderr  # our own bar stays
