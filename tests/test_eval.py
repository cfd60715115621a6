"""`phyprompt eval` and `phyprompt.evaluation`: the cache, prompt sets, statistics against hand-computed cases,
and whole runs on the tiny trained refiner, the toy video backend (tests/plugins) and a tiny random AutoEval,
in this process (counting the backend's renders), plus one run killed for real and resumed."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from conftest import PLUGINS, REPO
from phyprompt import cli
from phyprompt.service.cache import Cache, key
from phyprompt.evaluation.prompt_sets import MAX_CAPTION_CHARS, PromptSetError, load_prompt_set
from phyprompt.evaluation.statistics import paired_difference, per_prompt, rate
from phyprompt.language.prompt_lists import PromptListError
from phyprompt_toy_backend import WORD_LIMIT, ToyBackend, write_toy_model
from support.chat_server import ChatServer, answer, status
from support.chat_server import per_prompt as reply_per_prompt

CAPTIONS = ["a cat jumps onto a table", "water pours into a glass", "a ball rolls down a ramp"]


# ------------------------------------------------------------------------------------------------ cache

def test_key_is_canonical_and_changes_with_any_part():
    assert key(model="m", guidance=6.0, size=(720, 480)) == key(size=[720, 480], guidance=6, model="m")
    assert len({key(prompt="a"), key(prompt="b"), key(prompt="a", seed=1)}) == 3
    with pytest.raises(ValueError):
        key(guidance=float("nan"))
    with pytest.raises(TypeError):
        key(model=object())


def test_records_and_videos_round_trip_and_partial_entries_are_misses(tmp_path):
    cache = Cache(tmp_path)
    k = key(prompt="a cat")
    assert cache.get("score", k) is None and cache.get_video(k) is None
    cache.put("score", k, {"sa": 4, "caption": "ü"})
    assert cache.get("score", k) == {"sa": 4, "caption": "ü"}
    from phyprompt.video.writer import write_video

    data = write_video(np.zeros((2, 8, 8, 3), np.float32), 8, tmp_path / "made.mp4").read_bytes()
    path, record = cache.put_video(k, data, 8, {"seed": 1})
    assert cache.get_video(k) == (path, {"seed": 1, "suffix": ".mp4", "fps": 8.0}) and path.read_bytes() == data
    # a process killed between the video file and its record: the file alone is not an entry
    cache.path("video", k).unlink()
    assert path.is_file() and cache.get_video(k) is None
    # a damaged record (only a disk failure or a hand edit makes one) is a miss, replaced by the next put
    cache.path("score", k).write_text("{half")
    assert cache.get("score", k) is None
    with pytest.raises(ValueError):
        cache.path("../x", k)
    assert not [p for p in tmp_path.rglob(".*")]  # no partial left behind


def test_concurrent_writers_of_one_key_leave_one_whole_record(tmp_path):
    cache, k = Cache(tmp_path), key(prompt="shared")
    record = {"text": "x" * 200_000}
    threads = [threading.Thread(target=cache.put, args=("score", k, record)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.get("score", k) == record and [p.name for p in cache.path("score", k).parent.iterdir()] == [
        f"{k}.json"]


# ------------------------------------------------------------------------------------------- prompt sets

def test_a_text_file_with_blank_lines_repeats_and_a_huge_caption(tmp_path):
    listed = tmp_path / "prompts.txt"
    listed.write_text("a cat jumps\n\n   \nA cat jumps!\nwater pours\n", encoding="utf-8")
    prompts = load_prompt_set(listed)
    assert prompts.captions == ["a cat jumps", "water pours"] and "dropped 1 repeat" in prompts.notes[0]
    listed.write_text("a cat jumps\n" + "x" * 10_000 + "\n", encoding="utf-8")
    with pytest.raises(PromptSetError, match=f"prompt 2: the caption is 10,000 characters, more than the "
                                             f"{MAX_CAPTION_CHARS:,}"):
        load_prompt_set(listed)
    with pytest.raises(PromptSetError, match="--hard needs VideoPhy-2's is_hard column"):
        load_prompt_set(listed, hard=True)


def test_videophy2_tables_one_item_per_caption_hard_subset_and_missing_columns(tmp_path):
    rows = [("a cat jumps", "True", "sports"), ("a cat jumps", "True", "sports"), ("water pours", "False", "fluid"),
            ("", "False", ""), ("a ball rolls", "1", "sports")]
    table = tmp_path / "videophy2_test.csv"
    table.write_text("caption,is_hard,category,sa\n" + "".join(f"{c},{h},{k},3\n" for c, h, k in rows))
    test_set = load_prompt_set(table)
    assert test_set.captions == ["a cat jumps", "water pours", "a ball rolls"]
    assert test_set.notes == ("skipped 1 row without a caption", "kept one row per caption: dropped 1 repeat")
    assert load_prompt_set(table, hard=True).captions == ["a cat jumps", "a ball rolls"]
    jsonl = tmp_path / "test.jsonl"
    jsonl.write_text("".join(json.dumps({"caption": c, "is_hard": h == "True"}) + "\n" for c, h, _ in rows))
    assert load_prompt_set(jsonl, hard=True).captions == ["a cat jumps"]
    pyarrow = pytest.importorskip("pyarrow")
    import pyarrow.parquet as parquet

    parquet.write_table(pyarrow.table({"caption": [c for c, _, _ in rows]}), tmp_path / "test.parquet")
    assert load_prompt_set(tmp_path / "test.parquet").captions == test_set.captions
    (tmp_path / "bad.csv").write_text("prompt,category\na cat,sports\n")
    with pytest.raises(PromptSetError, match=r"missing column caption \(found: category, prompt\)"):
        load_prompt_set(tmp_path / "bad.csv")
    (tmp_path / "nohard.csv").write_text("caption\na cat\n")
    with pytest.raises(PromptSetError, match="missing column is_hard"):
        load_prompt_set(tmp_path / "nohard.csv", hard=True)


def test_a_prompt_set_that_is_not_plain_text_is_refused_naming_the_row(tmp_path, capsys):
    fix = "prompt, caption and training files must be plain text: delete the character"
    table = tmp_path / "test.csv"
    table.write_text("caption,category\na cat jumps,sports\nwater\x00 pours,fluid\n")
    with pytest.raises(PromptListError) as error:
        load_prompt_set(table)
    assert str(error.value) == f"{table}:3: U+0000 (NUL) at column 6; {fix}"
    jsonl = tmp_path / "test.jsonl"
    jsonl.write_text(json.dumps({"caption": "a cat jumps", "category": "sports\x85"}) + "\n")  # an escape
    with pytest.raises(PromptListError) as error:
        load_prompt_set(jsonl)
    assert str(error.value) == f"{jsonl}: line 1, category: U+0085 (a control character) at character 7; {fix}"
    pyarrow = pytest.importorskip("pyarrow")
    import pyarrow.parquet as parquet

    parquet.write_table(pyarrow.table({"caption": ["a cat jumps", "water\x07 pours"]}), tmp_path / "test.parquet")
    with pytest.raises(PromptListError, match=r"test\.parquet: row 2, caption: U\+0007 \(a control character\) at "
                                              r"character 6; "):
        load_prompt_set(tmp_path / "test.parquet")
    (tmp_path / "notepad.txt").write_text("a cat jumps\n", encoding="utf-16")
    with pytest.raises(PromptListError, match=r"notepad\.txt: UTF-16 text \(it starts with a UTF-16 byte-order mark\); "
                                              "save the file as UTF-8"):
        load_prompt_set(tmp_path / "notepad.txt")


def test_every_error_of_eval_names_the_command_whatever_its_status(tmp_path, capsys):
    """One form, argparse's own for a subcommand: `phyprompt eval: error:` for bad input (1) as for bad
    arguments (2)."""
    (tmp_path / "prompts.txt").write_text("a cat jumps\nwater\x00 pours\n")
    for prompts, backend, status_code in (("prompts.txt", "toy", 1), ("missing.txt", "toy", 1),
                                          ("test.csv", "nope", 2)):
        (tmp_path / "test.csv").write_text("caption\na cat jumps\n")
        code = cli.main(["eval", str(tmp_path / prompts), "--backend", backend, str(tmp_path), "--judge",
                         str(tmp_path), "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert code == status_code and err.startswith("phyprompt eval: error: ") and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_limit_is_a_fixed_sample_that_ignores_file_order(tmp_path):
    captions = [f"prompt number {i}" for i in range(40)]
    forward, backward = tmp_path / "a.txt", tmp_path / "b.txt"
    forward.write_text("\n".join(captions))
    backward.write_text("\n".join(reversed(captions)))
    sample = load_prompt_set(forward, limit=5)
    assert len(sample.captions) == 5 and sorted(sample.captions) == sorted(load_prompt_set(backward, limit=5).captions)
    assert sample.captions == [c for c in captions if c in sample.captions]  # file order kept
    assert "a fixed sample of 5 of 40 prompts" in sample.notes[-1]


# -------------------------------------------------------------------------------------------- statistics

def test_bootstrap_interval_by_hand():
    # 5 of 10 videos succeed: a bootstrap mean is Binomial(10, 0.5) / 10, whose 2.5% and 97.5% quantiles are
    # 0.2 and 0.8 (P(X <= 1) = 11/1024 < 0.025 < P(X <= 2) = 56/1024, and symmetrically)
    estimate = rate([1.0] * 5 + [0.0] * 5)
    assert (estimate.value, estimate.low, estimate.high) == (50.0, 20.0, 80.0)
    assert rate([1.0, 1.0, 1.0]) == rate([1.0, 1.0, 1.0]) and rate([1.0, 1.0, 1.0]).low == 100.0


def test_paired_difference_by_hand():
    original = {"a": 1.0, "b": 0.0, "c": 0.0, "d": 1.0, "e": 0.0}
    refined = {"a": 1.0, "b": 1.0, "c": 0.0, "d": 1.0, "e": 1.0, "unpaired": 1.0}
    # differences 0, 1, 0, 0, 1: +40 pp; a bootstrap mean is Binomial(5, 0.4) / 5: P(0) = 0.078 > 0.025, so
    # the low end is 0; P(X <= 3) = 0.913 < 0.975 < P(X <= 4) = 0.990, so the high end is 0.8
    difference, paired = paired_difference(refined, original)
    assert paired == 5 and (difference.value, difference.low, difference.high) == (40.0, 0.0, 80.0)
    # several seeds: a prompt's value is the mean over its seeds
    assert per_prompt({("a", 0): 1, ("a", 1): 0, ("b", 0): 1}) == {"a": 0.5, "b": 1.0}


# ------------------------------------------------------------------------------------------ whole runs

@pytest.fixture(scope="module")
def models(tmp_path_factory, trained_refiner_dir):
    from support.tiny_autoeval import write_tiny_autoeval

    folder = tmp_path_factory.mktemp("eval-models")
    return {"refiner": trained_refiner_dir, "judge": write_tiny_autoeval(folder / "judge"),
            "toy": write_toy_model(folder / "toy")}


def _short_answers(monkeypatch):
    """Random judge weights rarely say </s>: a few answer tokens keep the runs fast (as in the judge's tests)."""
    from phyprompt.judges.videophy2.judge import AutoEvalJudge

    load = AutoEvalJudge.load.__func__
    monkeypatch.setattr(AutoEvalJudge, "load", classmethod(lambda cls, folder, **options: load(
        cls, folder, **options | {"max_length": 4})))


class _Renders(list):
    """The prompts the toy backend rendered, in order; `fail_on` makes it fail for one prompt, `stop_after`
    raises KeyboardInterrupt (a Ctrl-C) once that many videos were rendered."""

    fail_on: str | None = None
    stop_after: int = -1


def _count_renders(monkeypatch) -> _Renders:
    rendered = _Renders()
    original = ToyBackend.sample

    def sample(self, request, progress=None):
        if request.prompt == rendered.fail_on:
            raise RuntimeError("CUDA error: an illegal memory access")
        if len(rendered) == rendered.stop_after:
            raise KeyboardInterrupt
        rendered.append(request.prompt)
        return original(self, request, progress)

    monkeypatch.setattr(ToyBackend, "sample", sample)
    return rendered


@pytest.fixture(autouse=True)
def renders(monkeypatch):
    _short_answers(monkeypatch)
    return _count_renders(monkeypatch)


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text("\n".join(CAPTIONS) + "\n", encoding="utf-8")
    return path


REFERENCE_SEEDS = ("--seeds", "0", "1")


def evaluate(models, prompts, out, *extra, refiner=True, capsys=None) -> tuple[int, str, str]:
    args = ["eval", str(prompts), "--backend", "toy", models["toy"], "--judge", models["judge"], "--device", "cpu",
            "--out", str(out), "--quiet", "--bootstrap", "200"]
    if refiner:
        args += ["--refiner", f"tiny={models['refiner']}"]
    code = cli.main(args + [str(a) for a in extra])
    if capsys is None:
        return code, "", ""
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def reference(models, prompts, tmp_path_factory):
    """One uninterrupted run (the tiny refiner, two seeds), and the prompts it rendered."""
    out = tmp_path_factory.mktemp("reference") / "out"
    with pytest.MonkeyPatch.context() as monkeypatch:
        _short_answers(monkeypatch)
        rendered = _count_renders(monkeypatch)
        assert evaluate(models, prompts, out, *REFERENCE_SEEDS)[0] == 0
    return out, list(rendered)


def rows(out) -> list[dict]:
    return json.loads((out / "results.json").read_text())["rows"]


def samples_of(out) -> list[dict]:
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]


def test_end_to_end_outputs_and_a_cached_rerun_renders_nothing(models, prompts, reference, renders, capsys):
    out, rendered = reference
    # original: 3 captions x 2 seeds; the trained refiner writes one prompt for every caption: 1 x 2 seeds
    assert len(rendered) == 8
    for name in ("table.txt", "results.csv", "results.json", "samples.jsonl", "bars-toy.png", "report.html"):
        assert (out / name).stat().st_size > 0, name
    table = (out / "table.txt").read_text()
    assert [(r["refiner"], r["backend"], r["videos"], r["prompts"]) for r in rows(out)] == [
        ("original", "toy", 6, 3), ("tiny", "toy", 6, 3)]
    first = rows(out)
    assert first[1]["parse_rate"] == 1.0 and first[1]["d_joint"] is not None and first[0]["d_joint"] is None
    assert first[1]["paired_prompts"] == 3 and first[1]["render_s"] > 0 and first[1]["judge_s"] > 0
    assert (out / "results.csv").read_text().splitlines()[0].startswith("refiner,backend,prompts,videos")
    report = (out / "report.html").read_text()
    assert report.count("<video") == 3 and len(list((out / "videos").glob("*.mp4"))) == 3
    assert len(samples_of(out)) == 12 and all(s["sa"] is not None for s in samples_of(out))

    code, printed, err = evaluate(models, prompts, out, *REFERENCE_SEEDS, capsys=capsys)
    assert code == 0, err
    assert renders == []  # nothing rendered again
    assert json.loads((out / "results.json").read_text())["run"]["made_this_run"] == {
        "refine": 0, "render": 0, "judge": 0}
    assert printed.startswith(table) and (out / "table.txt").read_text() == table


def test_the_tokens_column_is_the_loaded_models_limit_not_the_targets(models, prompts, reference, tmp_path, renders,
                                                                     capsys):
    """The toy backend writes for the `generic` target (a nominal 226 tokens), but its model reads 8 words: the
    refined prompt's 12 words are cut, and the table says so, also when every video comes from the cache."""
    from phyprompt.language.targets import get_target
    from support.tiny_refiner import TRAINED_PROMPT

    assert get_target(ToyBackend.info.target).token_limit == 226 and len(TRAINED_PROMPT.split()) == 12 > WORD_LIMIT
    out, _ = reference
    code, _, err = evaluate(models, prompts, tmp_path / "out", *REFERENCE_SEEDS, "--cache", out / "cache",
                            capsys=capsys)
    assert code == 0 and renders == [], err  # no model loaded: the limit comes from the videos' records
    for folder in (out, tmp_path / "out"):
        assert [(r["refiner"], r["token_limit"], r["over_budget"]) for r in rows(folder)] == [
            ("original", WORD_LIMIT, 0), ("tiny", WORD_LIMIT, 3)]
        assert " 12/8 " in (folder / "table.txt").read_text()


def test_a_refiner_added_later_renders_only_its_own_videos(models, prompts, tmp_path, renders, capsys):
    code, _, err = evaluate(models, prompts, tmp_path / "out", refiner=False, capsys=capsys)
    assert code == 0, err
    assert sorted(renders) == sorted(CAPTIONS) and [r["refiner"] for r in rows(tmp_path / "out")] == ["original"]
    code, _, err = evaluate(models, prompts, tmp_path / "out", capsys=capsys)
    assert code == 0, err
    refined = {s["prompt"] for s in samples_of(tmp_path / "out") if s["refiner"] == "tiny"}
    assert renders[3:] == sorted(refined) and len(refined) == 1


def test_cancelled_mid_run_then_resumed_gives_the_uninterrupted_table(models, prompts, reference, tmp_path, renders,
                                                                     capsys):
    renders.stop_after = 3  # Ctrl-C during the fourth render
    code, _, err = evaluate(models, prompts, tmp_path / "out", *REFERENCE_SEEDS, capsys=capsys)
    assert code == 130 and "cancelled" in err and not (tmp_path / "out" / "results.json").exists()
    assert not [p for p in (tmp_path / "out").rglob(".*")]  # no partial file
    renders.clear()
    renders.stop_after = -1
    code, _, err = evaluate(models, prompts, tmp_path / "out", *REFERENCE_SEEDS, capsys=capsys)
    assert code == 0, err
    assert len(renders) == 5  # only what the cancelled run had not finished
    assert (tmp_path / "out" / "table.txt").read_text() == (reference[0] / "table.txt").read_text()
    assert _scores(tmp_path / "out") == _scores(reference[0])


def _scores(out) -> list:
    return [{k: r[k] for k in ("refiner", "sa", "pc", "joint", "d_joint", "parse_rate")} for r in rows(out)]


def test_a_killed_process_resumes(models, prompts, reference, tmp_path, capsys):
    """SIGKILL, not a polite Ctrl-C: the process dies between two writes, wherever it is."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "phyprompt", "eval", str(prompts), "--backend", "toy", models["toy"],
               "--judge", models["judge"], "--device", "cpu", "--out", str(out), "--quiet", "--bootstrap", "200",
               *REFERENCE_SEEDS, "--refiner", f"tiny={models['refiner']}"]
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO), str(PLUGINS)])}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list((out / "cache").rglob("*.mp4")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "results.json").exists()
    code, _, err = evaluate(models, prompts, out, *REFERENCE_SEEDS, capsys=capsys)
    assert code == 0, err
    assert (out / "table.txt").read_text() == (reference[0] / "table.txt").read_text()


def test_a_backend_failing_for_one_prompt_is_recorded_and_the_run_goes_on(models, prompts, tmp_path, renders,
                                                                          capsys):
    renders.fail_on = CAPTIONS[1]
    code, _, err = evaluate(models, prompts, tmp_path / "out", refiner=False, capsys=capsys)
    assert code == 0, err
    assert "failed to render 'water pours into a glass' (seed 0): RuntimeError: CUDA error" in err
    [row] = rows(tmp_path / "out")
    assert (row["failed_renders"], row["videos"], row["prompts"]) == (1, 2, 2)
    assert [s["render_error"] is not None for s in samples_of(tmp_path / "out")] == [False, True, False]
    renders.fail_on = None
    assert evaluate(models, prompts, tmp_path / "out", refiner=False)[0] == 0
    assert rows(tmp_path / "out")[0]["failed_renders"] == 0 and renders[-1] == CAPTIONS[1]  # tried again


def test_a_backend_failing_every_render_stops_the_run(models, tmp_path, renders, capsys):
    renders.fail_on = CAPTIONS[0]
    (tmp_path / "one.txt").write_text(CAPTIONS[0] + "\n")
    code, _, err = evaluate(models, tmp_path / "one.txt", tmp_path / "out", "--seeds", "0", "1", "2", refiner=False,
                            capsys=capsys)
    assert code == 1 and "toy failed its first 3 renders" in err


def test_an_api_refiner_failing_for_some_prompts_falls_back_and_counts(models, prompts, tmp_path, renders, capsys):
    server = ChatServer(default=reply_per_prompt({CAPTIONS[2]: status(400, {"error": {"message": "bad request"}})},
                                                 answer()))
    try:
        code, _, err = evaluate(models, prompts, tmp_path / "out", "--api-refiner", f"gpt=gpt-4o@{server.url}",
                                refiner=False, capsys=capsys)
    finally:
        server.close()
    assert code == 0, err
    assert "1 prompt(s) fell back to the original" in err
    row = rows(tmp_path / "out")[1]
    assert (row["refiner"], row["videos"], row["fallbacks"]) == ("gpt", 3, 1)
    assert row["parse_rate"] == pytest.approx(2 / 3) and "server failed" in next(iter(row["failures"]))
    failed = [s for s in samples_of(tmp_path / "out") if s["refiner"] == "gpt" and s["caption"] == CAPTIONS[2]]
    assert [(s["prompt"], s["refined"]) for s in failed] == [(CAPTIONS[2], False)]
    assert len(renders) == 4  # its fallback shares the original prompt's video


@pytest.mark.parametrize("extra, message", [
    (["--backend", "nope", "x"], "unknown video backend 'nope'"),
    (["--refiner", "a=/no/such/folder"], "no refiner folder or .gguf file at /no/such/folder"),
    (["--api-refiner", "gpt-4o"], "takes [LABEL=]MODEL@URL"),
    (["--refiner", "original=builtin"], "two refiners are called 'original'"),
])
def test_bad_arguments(models, prompts, tmp_path, capsys, extra, message):
    code, _, err = evaluate(models, prompts, tmp_path / "out", *extra, refiner=False, capsys=capsys)
    assert code == 2 and message in err


def test_render_settings_no_model_can_render_fail_before_any_model_loads(models, prompts, tmp_path, monkeypatch,
                                                                       capsys):
    """A size the toy's description refuses is a bad argument before the refiner, a tokenizer or the video
    model is loaded, not after the refinement stage."""
    from phyprompt.refiners.local import LocalRefiner

    def loaded(*args, **kwargs):
        pytest.fail("a model was loaded before the render settings were checked")

    for owner in (ToyBackend, LocalRefiner):
        monkeypatch.setattr(owner, "load", classmethod(loaded))
    monkeypatch.setattr(ToyBackend, "load_token_counter", classmethod(loaded))
    code, printed, err = evaluate(models, prompts, tmp_path / "out", "--size", "12x8", capsys=capsys)
    assert code == 2 and printed == "" and err == "phyprompt eval: error: toy sizes are multiples of 8\n"


def test_videos_are_cached_with_the_8bit_levels_the_backend_describes(models, prompts, tmp_path, monkeypatch,
                                                                     renders, capsys):
    from phyprompt.service.cache import eight_bit_part
    from phyprompt.video import EightBit

    from phyprompt.video import writer

    conversions, write_video = [], writer.write_video

    def recorded(frames, fps, path, **options):
        conversions.append(options.get("eight_bit"))
        return write_video(frames, fps, path, **options)

    monkeypatch.setattr(writer, "write_video", recorded)
    code, _, err = evaluate(models, prompts, tmp_path / "out", refiner=False, capsys=capsys)
    assert code == 0, err
    assert len(renders) == 3 and conversions == [ToyBackend.info.eight_bit] * 3
    # the conversion is part of a video's key, except the default one (keys from before it was stay valid)
    assert eight_bit_part(EightBit()) == eight_bit_part(EightBit("nearest")) == {}
    assert eight_bit_part(ToyBackend.info.eight_bit) == {"eight_bit": {"rounding": "truncate", "dtype": "float32"}}
