"""train.data: the schema, the validator, the builders and teacher generation."""

from __future__ import annotations

import csv
import glob
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from phyprompt.language.contract import format_output
from phyprompt.language.prompt_lists import read_prompt_list
from phyprompt.language.targets import TARGETS
from train.data.__main__ import main as data_main
from train.data.builders import SourceFormatError, from_phygenbench, from_videophy2
from train.data.cues import CUES
from train.data.schema import read_examples
from phyprompt.refiners import RefinerSpec
from train.data.teacher import SERVED_MODEL, Teacher, TeacherError, generate
from train.data.validate import validate

ROOT = Path(__file__).resolve().parents[1]
SEED_FILES = sorted(glob.glob(str(ROOT / "train" / "data" / "seed_*.jsonl")))
CONCISE_FILES = sorted(glob.glob(str(ROOT / "train" / "data" / "concise_*.jsonl")))
CUE_FILES = sorted(glob.glob(str(ROOT / "train" / "data" / "cue_*.jsonl")))


def row(i: int = 1, **changes) -> dict:
    base = {
        "id": f"t-{i:03d}", "user_prompt": f"a red ball number {i} rolls off a desk",
        "reasoning": "The ball leaves the edge with its rolling speed and gravity curves its path down.",
        "refined_prompt": "A red ball rolls off the desk edge and falls in a curved arc to the floor, bouncing once.",
        "laws": ["gravity", "projectile motion"], "category": "mechanics", "subcategory": "projectiles",
        "target": "lavie", "source": "test",
    }
    return base | changes


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def problems_of(path: Path, **options) -> list[str]:
    return [str(p) for p in validate(read_examples([path]), **options)]


# --- the seed set -------------------------------------------------------------------------------


def test_seed_set_is_large_valid_and_covers_every_category_and_target():
    loaded = read_examples(SEED_FILES)
    assert validate(loaded) == [], "run python -m train.data validate train/data/seed_*.jsonl"
    assert len(loaded.examples) >= 300
    categories = {e.category for e in loaded.examples}
    assert {"mechanics", "fluids", "deformation", "thermal", "optics", "interactions"} <= categories
    targets = [e.target for e in loaded.examples]
    for name in ("cogvideox", "videocrafter2", "lavie"):
        assert targets.count(name) >= 50, name
    assert {e.source for e in loaded.examples} == {"phyprompt-seed"}


def test_the_concise_set_is_valid_and_keeps_its_style():
    # the built-in's training set: short, number-free answers a 135M model can copy without inventing figures
    loaded = read_examples(CONCISE_FILES)
    assert validate(loaded) == [] and len(loaded.examples) >= 500
    assert {e.source for e in loaded.examples} == {"phyprompt-concise"}
    categories = {e.category for e in loaded.examples}
    assert {"mechanics", "fluids", "deformation", "thermal", "optics", "interactions"} <= categories
    for example in loaded.examples:
        assert not re.search(r"\d", example.reasoning + example.refined_prompt), example.id
        assert len(example.reasoning.split()) <= 50, example.id
        assert len(example.refined_prompt.split()) <= (75 if example.target == "cogvideox" else 40), example.id


def test_the_cue_set_is_what_its_builder_makes_of_the_concise_set(tmp_path, capsys):
    # the built-in's training set: a restatement of the user's words and one general rule of the scene's kind
    assert [Path(f).name for f in CUE_FILES] == [Path(f).name.replace("concise_", "cue_") for f in CONCISE_FILES]
    assert data_main(["cues", *CONCISE_FILES, "--out-dir", str(tmp_path)]) == 0
    for committed in CUE_FILES:
        assert (tmp_path / Path(committed).name).read_text() == Path(committed).read_text(), committed
    loaded = read_examples(CUE_FILES)
    assert validate(loaded) == [] and len(loaded.examples) == len(read_examples(CONCISE_FILES).examples)
    assert {e.source for e in loaded.examples} == {"phyprompt-cue"}
    for example in loaded.examples:
        assert example.reasoning.startswith("The key physics in this scene is ")
        cue = CUES[example.subcategory]
        assert example.refined_prompt.endswith(cue if example.target == "cogvideox" else cue[1:]), example.id
        assert not re.search(r"\d", example.refined_prompt), example.id


def test_a_subcategory_without_a_cue_is_named(tmp_path, capsys):
    source = write_jsonl(tmp_path / "concise_magic.jsonl", [row(1, subcategory="levitation")])
    assert data_main(["cues", str(source), "--out-dir", str(tmp_path)]) == 1
    assert "no cue for subcategory 'levitation'; add one to train/data/cues.py" in capsys.readouterr().err
    assert not (tmp_path / "cue_magic.jsonl").exists()


def test_heldout_prompts_are_in_no_training_file_and_the_files_share_no_prompt(capsys):
    heldout = ROOT / "train" / "data" / "heldout_prompts.txt"
    assert len(read_prompt_list(str(heldout))) >= 40
    assert data_main(["validate", *SEED_FILES, *CONCISE_FILES, "--exclude", str(heldout)]) == 0
    # the cue set shares its user prompts with the concise set it is made from: the two are never mixed
    assert data_main(["validate", *SEED_FILES, *CUE_FILES, "--exclude", str(heldout)]) == 0


# --- validator ----------------------------------------------------------------------------------


def test_good_rows_pass(tmp_path):
    assert problems_of(write_jsonl(tmp_path / "d.jsonl", [row(1), row(2)])) == []


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"reasoning": None}, "missing field 'reasoning'"),
        ({"user_prompt": "   "}, "'user_prompt' must be a non-empty string"),
        ({"laws": "gravity"}, "'laws' must be a non-empty list"),
        ({"laws": []}, "'laws' must be a non-empty list"),
        ({"colour": "red"}, "unknown field(s) 'colour'"),
        ({"category": "magic"}, "category 'magic' is not one of"),
        ({"target": "sora"}, "target 'sora' is not one of"),
        ({"refined_prompt": "A ball falls.</prompt> then more"}, "remove tags from the text"),
        ({"refined_prompt": "A <think>ball</think> falls onto the floor."}, "remove tags from the text"),
        ({"refined_prompt": "<prompt>"}, "the parser rejects the answer"),
        ({"refined_prompt": "The ball leaves the edge with its rolling speed and gravity curves its path down."},
         "the parser rejects the answer"),  # the prompt only repeats the reasoning
        ({"refined_prompt": "word " * 80}, "over the 77-token budget of lavie"),
    ],
)
def test_each_bad_row_is_reported_with_its_line(tmp_path, changes, expected):
    bad = {k: v for k, v in row(2, **changes).items() if v is not None}
    problems = problems_of(write_jsonl(tmp_path / "d.jsonl", [row(1), bad, row(3)]))
    assert problems and all(p.startswith(f"{tmp_path / 'd.jsonl'}:2: ") for p in problems), problems
    assert any(expected in p for p in problems), problems


def test_long_prompt_fits_cogvideox_but_not_clip_targets(tmp_path):
    text = "A ball rolls across the floor and slows as friction takes its speed. " * 5
    assert TARGETS["cogvideox"].token_limit > 150
    assert problems_of(write_jsonl(tmp_path / "a.jsonl", [row(1, refined_prompt=text, target="cogvideox")])) == []
    assert problems_of(write_jsonl(tmp_path / "b.jsonl", [row(1, refined_prompt=text, target="videocrafter2")]))


def test_duplicates_and_evaluation_overlap(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [
        row(1), row(1, user_prompt="something else entirely"),
        row(3, user_prompt="A RED ball number 1 rolls off a desk!"),
        row(4, user_prompt="a glass slides off a wet bar counter"),
    ])
    evaluation = tmp_path / "eval.csv"
    with open(evaluation, "w", newline="") as handle:
        csv.writer(handle).writerows([["caption", "other"], ["A glass slides off a wet bar counter.", "x"]])
    problems = problems_of(data, exclude={"a glass slides off a wet bar counter": str(evaluation)})
    assert any(":2: duplicate id 't-001'" in p for p in problems)
    assert any(":3: duplicate user prompt (first at" in p and "d.jsonl:1)" in p for p in problems)
    assert any(":4: user prompt is in the evaluation list" in p for p in problems)
    # the CLI reads the evaluation list itself, from any of its formats
    assert data_main(["validate", str(data), "--exclude", str(evaluation)]) == 1


def test_malformed_lines_are_reported_and_the_rest_kept(tmp_path, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", [row(1), '{"id": "t-2", "user_prompt": ', "[1, 2]", "", row(5)])
    loaded = read_examples([data, tmp_path / "missing.jsonl"])
    assert [e.id for e in loaded.examples] == ["t-001", "t-005"]
    messages = [str(p) for p in loaded.problems]
    assert any(m.startswith(f"{data}:2: not valid JSON") for m in messages)
    assert any(m.startswith(f"{data}:3: expected a JSON object") for m in messages)
    assert any("missing.jsonl: cannot read" in m for m in messages)
    assert data_main(["validate", str(data)]) == 1
    out = capsys.readouterr()
    assert f"{data}:2: not valid JSON" in out.out
    assert "2 rows read (2 lavie); 2 problems" in out.err


def test_rows_that_are_not_plain_text_are_bad_rows_and_a_utf16_file_is_refused(tmp_path, capsys):
    raw = json.dumps(row(2)).replace("rolls off", "rolls\x7f off")  # json.dumps leaves DEL as it is
    data = write_jsonl(tmp_path / "d.jsonl", [
        row(1), raw, row(3, reasoning="The ball \u0000 falls."), row(4, laws=["gravity", "drag\x1b[0m"]), row(5)])
    loaded = read_examples([data])
    assert [e.id for e in loaded.examples] == ["t-001", "t-005"]
    assert [str(p) for p in loaded.problems] == [
        f"{data}:2: U+007F (DEL) at column {raw.index(chr(0x7f)) + 1}; the line must be plain text",
        f"{data}:3: field 'reasoning' holds U+0000 (NUL) at character 10; it must be plain text",
        f"{data}:4: field 'laws' holds U+001B (a control character) at character 5; it must be plain text"]
    wide = tmp_path / "wide.jsonl"
    wide.write_bytes(json.dumps(row(1)).encode("utf-16-le"))
    assert [str(p) for p in read_examples([wide]).problems] == [
        f"{wide}: looks like UTF-16 or UTF-32 text ({len(json.dumps(row(1)))} of its {2 * len(json.dumps(row(1)))} "
        "bytes are NUL); save the file as UTF-8"]
    assert data_main(["validate", str(data)]) == 1
    # a list of prompts to keep apart (--exclude) is read by the same rule
    (tmp_path / "heldout.txt").write_text("a cat\x00 jumps\n")
    assert data_main(["validate", str(tmp_path / "d.jsonl"), "--exclude", str(tmp_path / "heldout.txt")]) == 1
    assert "heldout.txt:1: U+0000 (NUL) at column 6" in capsys.readouterr().err


def test_validate_counts_with_a_real_tokenizer_when_given(tmp_path, tiny_refiner_dir):
    data = write_jsonl(tmp_path / "d.jsonl", [row(1)])
    assert data_main(["validate", str(data), "--tokenizer", f"lavie={tiny_refiner_dir}"]) == 0
    assert data_main(["validate", str(data), "--tokenizer", "sora=/nowhere"]) == 1


# --- builders -----------------------------------------------------------------------------------


def test_phygenbench_builder(tmp_path):
    source = tmp_path / "explicit_prompts.json"
    source.write_text(json.dumps([
        {"caption": "A metal spoon rests in a glass of water", "physical_laws": "Refraction bends light at the water "
         "surface, so the submerged part appears displaced.", "sub_category": "Refraction", "main_category": "Optics",
         "explicit_caption": "A metal spoon in a glass of water looks bent exactly at the waterline."},
        {"caption": "a metal spoon rests in a glass of water.", "physical_laws": "same", "sub_category": "x",
         "main_category": "Optics", "explicit_caption": "repeat"},
        {"caption": "Ice melts", "physical_laws": "Heat flows in.", "sub_category": "Melting",
         "main_category": "Thermal", "explicit_caption": "word " * 300},
    ]))
    result = from_phygenbench(source, target="cogvideox")
    assert [e.user_prompt for e in result.examples] == ["A metal spoon rests in a glass of water"]
    example = result.examples[0]
    assert (example.category, example.subcategory, example.laws, example.source) == (
        "optics", "Refraction", ("Refraction",), "phygenbench")
    assert result.skipped == {"repeated user prompt": 1, "over the cogvideox budget": 1}
    out = tmp_path / "built.jsonl"
    assert data_main(["from-phygenbench", str(source), "--out", str(out)]) == 0
    assert validate(read_examples([out])) == []
    (tmp_path / "wrong.json").write_text(json.dumps([{"prompt": "x"}]))
    with pytest.raises(SourceFormatError, match="is this explicit_prompts.json"):
        from_phygenbench(tmp_path / "wrong.json")


def test_videophy2_builder_merges_the_rules_of_one_caption(tmp_path):
    source = tmp_path / "train.csv"
    columns = ["caption", "upsampled_caption", "category", "physics_rules_followed",
               "physics_rules_unfollowed", "physics_rules_cannot_be_determined", "sa", "pc"]
    upsampled = "A hammer strikes a nail, driving it into the plank while the wood around it dents slightly."
    with open(source, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerow(["A hammer hits a nail", upsampled, "Object interactions",
                         "['The nail moves in the direction of the blow']", "[]", "", 4, 3])
        writer.writerow(["A hammer hits a nail", upsampled, "Object interactions", "[]",
                         '["The hammer rebounds slightly"]', "nan", 2, 2])
        writer.writerow(["A kite flies", "", "Sports", "[]", "[]", "", 5, 5])
    result = from_videophy2(source)
    assert len(result.examples) == 1 and result.skipped == {"a field is empty": 1, "repeated user prompt": 1}
    example = result.examples[0]
    assert example.laws == ("The nail moves in the direction of the blow", "The hammer rebounds slightly")
    assert example.refined_prompt == upsampled and example.subcategory == "Object interactions"
    assert "The hammer rebounds slightly." in example.reasoning
    assert validate(read_examples([write_jsonl(tmp_path / "o.jsonl", [example.to_dict()])])) == []
    assert data_main(["from-videophy2", str(tmp_path / "nothing.csv"), "--out", str(tmp_path / "x.jsonl")]) == 1


def test_videophy2_builder_reads_parquet_with_list_columns(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    upsampled = "A skier carves down a slope, snow spraying outward from the edges of the skis as they turn."
    table = pa.table({
        "caption": ["A skier turns on a slope"], "upsampled_caption": [upsampled], "category": ["Sports"],
        "physics_rules_followed": [["Snow sprays away from the turning skis"]],
        "physics_rules_unfollowed": [[]], "physics_rules_cannot_be_determined": [None],
    })
    pq.write_table(table, tmp_path / "train.parquet")
    result = from_videophy2(tmp_path / "train.parquet", target="cogvideox")
    assert [(e.user_prompt, e.laws) for e in result.examples] == [
        ("A skier turns on a slope", ("Snow sprays away from the turning skis",))]


@pytest.mark.parametrize("name", ["train.csv", "train.parquet", "explicit_prompts.json"])
def test_builders_refuse_a_source_that_is_not_plain_text(tmp_path, name):
    caption, upsampled = "A hammer hits a nail", "A hammer \x1b strikes a nail, driving it into the plank."
    path = tmp_path / name
    if name.endswith(".json"):  # an escape in JSON: only the decoded value shows it
        path.write_text(json.dumps([{"caption": caption, "physical_laws": "Momentum.", "main_category": "Mechanics",
                                     "sub_category": "Impact", "explicit_caption": upsampled}]))
        where, build = "item 1, explicit_caption", from_phygenbench
    elif name.endswith(".parquet"):
        pyarrow = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        pq.write_table(pyarrow.table({"caption": [caption], "upsampled_caption": [upsampled],
                                      "physics_rules_followed": [["The nail \x00 moves"]]}), path)
        where, build = "row 1, upsampled_caption", from_videophy2
    else:
        path.write_text(f"caption,upsampled_caption\n{caption},{upsampled}\n")
        where, build = None, from_videophy2
    with pytest.raises(ValueError) as error:
        build(path)
    message = str(error.value)
    if where:
        assert message.startswith(f"{path}: {where}: U+001B (a control character) at character 10; "), message
    else:  # CSV has no escapes: the file's text shows it, by line and column
        assert message.startswith(f"{path}:2: U+001B (a control character) at column 31; "), message


# --- teacher generation -------------------------------------------------------------------------


class FakeChatServer:
    """An OpenAI-compatible chat-completions endpoint answering from a table (prompt text -> answer)."""

    def __init__(self, answers: dict[str, str], failures: list[int] | None = None):
        self.answers, self.failures, self.requests = answers, list(failures or []), []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append((self.path, self.headers.get("Authorization"), body))
                if server.failures:
                    code = server.failures.pop(0)
                    self.send_response(code)
                    self.end_headers()
                    self.wfile.write(b'{"error": "nope"}')
                    return
                user = body["messages"][-1]["content"]
                content = next((a for p, a in server.answers.items() if user.endswith(p)), "I cannot help.")
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def chat_server():
    servers = []

    def start(*args, **kwargs):
        servers.append(FakeChatServer(*args, **kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


GOOD = format_output("A dropped glass speeds up under gravity and shatters on the hard floor.",
                     "A glass slips from a hand, falls faster and faster, and bursts into shards on the tiles.")


def teacher_at(url, model=SERVED_MODEL, **settings) -> Teacher:
    """A teacher on a server: a refiner spec of the api kind, as `train.data generate --teacher URL` makes it."""
    return Teacher(RefinerSpec.build("api", url, model=model, **settings))


def test_endpoint_teacher_keeps_valid_answers_and_resumes(tmp_path, chat_server, monkeypatch):
    server = chat_server({
        "a glass is dropped": GOOD,
        "a long story": format_output("Gravity acts.", "word " * 200),
        "no tags at all": "Sure! Here is a better prompt: a ball.",
        "cut short": "<think>Gravity pulls the ball down.</think>\n<prompt>A red ball falls toward the",
    })
    prompts = ["a glass is dropped", "a long story", "no tags at all", "cut short"]
    out = tmp_path / "teacher.jsonl"
    monkeypatch.setenv("TEACHER_KEY", "secret")
    teacher = teacher_at(server.url, model="big-model", api_key_env="TEACHER_KEY")
    calls = []
    summary = generate(teacher, prompts, out, ["lavie"], batch_size=2, progress=lambda d, t: calls.append((d, t)))
    assert (summary.kept, summary.rejected, summary.already_done) == (1, 3, 0)
    assert calls == [(2, 4), (4, 4)]
    path, auth, body = server.requests[0]
    assert path == "/v1/chat/completions" and auth == "Bearer secret" and body["model"] == "big-model"
    assert body["messages"][0]["role"] == "system" and "LaVie" in body["messages"][1]["content"]
    kept = read_examples([out]).examples
    assert [e.user_prompt for e in kept] == ["a glass is dropped"]
    assert kept[0].laws == ("gravity", "fracture") and kept[0].category == "mechanics"
    assert kept[0].source == "teacher:big-model" and validate(read_examples([out])) == []
    rejected = [json.loads(x) for x in (tmp_path / "teacher.rejected.jsonl").read_text().splitlines()]
    errors = {r["user_prompt"]: r["error"] for r in rejected}
    assert errors["a long story"] == "refined prompt over the lavie budget"
    assert errors["cut short"].startswith("answer cut off before </prompt>")

    # A kill mid-write leaves half a line; the rerun drops it and asks only for what is missing.
    with open(out, "a") as handle:
        handle.write('{"id": "teacher-9", "user_pro')
    server.requests.clear()
    summary = generate(teacher, prompts + ["A glass is dropped!", "a glass is dropped again"], out, ["lavie"])
    assert (summary.kept, summary.already_done) == (0, 5)  # the same prompt in other case/punctuation too
    assert len(server.requests) == 1 and read_examples([out]).problems == []


def test_endpoint_errors_are_retried_or_reported(tmp_path, chat_server, monkeypatch):
    monkeypatch.setattr("phyprompt.infra.endpoint.ChatClient.backoff", 0.0)
    server = chat_server({"a glass is dropped": GOOD}, failures=[503, 429])
    summary = generate(teacher_at(server.url), ["a glass is dropped"], tmp_path / "a.jsonl", ["cogvideox"])
    assert summary.kept == 1 and len(server.requests) == 3
    server = chat_server({}, failures=[401])
    with pytest.raises(TeacherError, match="HTTP 401"):
        generate(teacher_at(server.url), ["x"], tmp_path / "b.jsonl", ["cogvideox"])
    with pytest.raises(TeacherError, match="cannot reach"):
        teacher_at("http://127.0.0.1:9/v1", timeout=2).answer(["x"], "lavie")


def test_local_teacher_through_the_cli(tmp_path, trained_refiner_dir, capsys):
    from support.tiny_refiner import TRAINED_PROMPT

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# comment\na cat jumps onto a table\na ball rolls down a ramp\n")
    out = tmp_path / "local.jsonl"
    args = ["generate", "--teacher", trained_refiner_dir, "--in", str(prompts), "--out", str(out),
            "--target", "cogvideox", "--target", "lavie", "--max-new-tokens", "48", "--quiet", "--device", "cpu"]
    assert data_main(args) == 0
    kept = read_examples([out]).examples
    assert sorted(e.user_prompt for e in kept) == ["a ball rolls down a ramp", "a cat jumps onto a table"]
    assert all(e.refined_prompt == TRAINED_PROMPT and e.target in ("cogvideox", "lavie") for e in kept)
    assert "kept 2, rejected 0" in capsys.readouterr().err
    assert data_main(args) == 0
    assert "skipped 2 already done" in capsys.readouterr().err
    assert data_main(["generate", "--teacher", str(tmp_path / "no-model"), "--in", str(prompts),
                      "--out", str(out)]) == 1
    assert "train.data: error:" in capsys.readouterr().err



def test_each_prompt_keeps_its_target_and_targets_share_the_prompts():
    from train.data.teacher import target_for

    targets = ["cogvideox", "videocrafter2", "lavie"]
    prompts = [f"scene number {i} with a falling object" for i in range(300)]
    chosen = [target_for(p, targets) for p in prompts]
    assert all(chosen.count(t) > 70 for t in targets)
    assert [target_for(p, targets) for p in reversed(prompts)] == chosen[::-1]
    assert target_for("A Glass, dropped!", targets) == target_for("a glass dropped", targets)
