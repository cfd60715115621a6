"""The one prompt-list reader: every format, the same rules for blanks, comments and duplicates."""

import io
import json

import pytest

from phyprompt.prompt_lists import PromptListError, prompt_key, read_prompt_list

PROMPTS = ["a cat jumps onto a table", "water pours into a glass", "猫が跳ぶ 🐱"]


def write(path, text: str, encoding="utf-8"):
    path.write_text(text, encoding=encoding)
    return path


def test_txt_skips_blank_lines_and_comments_and_strips_spaces(tmp_path):
    path = write(tmp_path / "p.txt", "# held-out set\n a cat jumps onto a table \n\n   \n  # indented comment\r\n"
                                     "water pours into a glass\r\n猫が跳ぶ 🐱")
    assert read_prompt_list(path) == PROMPTS


def test_any_other_suffix_is_read_as_text(tmp_path):
    assert read_prompt_list(write(tmp_path / "prompts", "\n".join(PROMPTS))) == PROMPTS


def test_jsonl_strings_and_objects(tmp_path):
    rows = [json.dumps(PROMPTS[0]), "", json.dumps({"caption": PROMPTS[1], "id": 3}),
            json.dumps({"user_prompt": PROMPTS[2]}, ensure_ascii=False), json.dumps({"prompt": "  "})]
    assert read_prompt_list(write(tmp_path / "p.jsonl", "\n".join(rows) + "\n")) == PROMPTS


def test_json_list(tmp_path):
    values = [{"prompt": PROMPTS[0]}, PROMPTS[1], {"caption": 5, "user_prompt": PROMPTS[2]}, ""]
    assert read_prompt_list(write(tmp_path / "p.json", json.dumps(values))) == PROMPTS


def test_csv_with_a_prompt_column_and_a_spreadsheet_bom(tmp_path):
    text = "id,caption,source\n1,a cat jumps onto a table,x\n2,\"water pours into a glass\",y\n3,,z\n4,猫が跳ぶ 🐱,z\n5\n"
    assert read_prompt_list(write(tmp_path / "p.csv", text, encoding="utf-8-sig")) == PROMPTS


@pytest.mark.parametrize("name, text", [
    ("p.txt", "\n".join(PROMPTS)),
    ("p.jsonl", "\n".join(json.dumps(p) for p in PROMPTS)),
    ("p.json", json.dumps(PROMPTS)),
])
def test_a_byte_order_mark_is_not_part_of_the_first_prompt(tmp_path, name, text):
    assert read_prompt_list(write(tmp_path / name, text, encoding="utf-8-sig")) == PROMPTS


def test_a_stream_is_read_as_text():
    assert read_prompt_list(io.StringIO("\ufeff# from a pipe\na cat jumps onto a table\n\nwater pours into a glass\n"
                                        "猫が跳ぶ 🐱\n")) == PROMPTS


def test_duplicates_are_kept_unless_unique_and_the_first_spelling_wins(tmp_path):
    path = write(tmp_path / "p.txt", "A cat jumps onto a table!\nwater pours into a glass\n"
                                     "a cat  jumps onto a table\na CAT jumps, onto a table.\n")
    assert len(read_prompt_list(path)) == 4
    assert read_prompt_list(path, unique=True) == ["A cat jumps onto a table!", "water pours into a glass"]


def test_prompt_key_ignores_case_spacing_and_punctuation_only():
    assert prompt_key("  A cat, jumps!  ") == prompt_key("a cat jumps") == "a cat jumps"
    assert prompt_key("a cat jumps") != prompt_key("a cat jumped")
    assert prompt_key("Über-Katze") == "über katze"  # letters of any script are words


@pytest.mark.parametrize("name, text, message", [
    ("p.jsonl", '"fine"\n\n{"prompt": "a cat"\n', r"p\.jsonl:3: not valid JSON"),
    ("p.jsonl", '"fine"\n{"text": "a cat"}\n', r"p\.jsonl:2: expected a string or an object with one of caption"),
    ("p.json", '[\n"a cat",\n]', r"p\.json:3: not valid JSON"),
    ("p.json", '{"prompt": "a cat"}', r"p\.json: expected a JSON list of prompts"),
    ("p.json", '["a cat", 7]', r"p\.json: item 2: expected a string"),
    ("p.csv", "id,text\n1,a cat\n", r"p\.csv: no caption, prompt, user_prompt column in the CSV header"),
    ("p.csv", "", r"p\.csv: no caption, prompt, user_prompt column"),
])
def test_bad_files_raise_one_line_naming_the_place(tmp_path, name, text, message):
    with pytest.raises(PromptListError, match=message) as error:
        read_prompt_list(write(tmp_path / name, text))
    assert "\n" not in str(error.value)


def test_missing_folder_and_non_utf8_files(tmp_path):
    with pytest.raises(PromptListError, match=r"cannot read .*missing\.txt: No such file"):
        read_prompt_list(tmp_path / "missing.txt")
    with pytest.raises(PromptListError, match="cannot read .*: Is a directory"):
        read_prompt_list(tmp_path)
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(PromptListError, match=r"latin1\.txt: not UTF-8 text"):
        read_prompt_list(tmp_path / "latin1.txt")
