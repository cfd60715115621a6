"""The one prompt-list reader: every format, the same rules for blanks, comments and duplicates."""

import io
import json

import pytest

from phyprompt.language.prompt_lists import PromptListError, prompt_key, read_prompt_list

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
    with pytest.raises(PromptListError, match=r"latin1\.txt:1: not UTF-8 text \(byte 0xE9 at column 4\); save the "
                                              "file as UTF-8"):
        read_prompt_list(tmp_path / "latin1.txt")


# --- plain text only: the rule every reader of prompt, caption and training files shares ----------

FIX = "prompt, caption and training files must be plain text: delete the character"


@pytest.mark.parametrize("name, text, message", [
    ("p.txt", "a cat jumps\r\nwater \x00pours\r\n", "p.txt:2: U+0000 (NUL) at column 7"),
    ("p.txt", "a cat jumps\rwater pours\x1b[31m\n", "p.txt:2: U+001B (a control character) at column 12"),
    ("p.txt", "a cat\x7f jumps\n", "p.txt:1: U+007F (DEL) at column 6"),
    ("p.txt", "a cat\x85 jumps\n", "p.txt:1: U+0085 (a control character) at column 6"),  # C1 (NEL)
    ("p.txt", "a cat\x0c jumps\n", "p.txt:1: U+000C (a control character) at column 6"),  # a form feed
    ("p.csv", "id,caption\n1,a cat\n2,water\x07 pours\n", "p.csv:3: U+0007 (a control character) at column 8"),
    # raw, JSON rejects it as syntax; escaped, only the decoded value shows it
    ("p.jsonl", '"a cat"\n"water \x01 pours"\n', "p.jsonl:2: U+0001 (a control character) at column 8"),
    ("p.jsonl", '"a cat"\n{"caption": "water \\u0000 pours"}\n', "p.jsonl:2: U+0000 (NUL) at character 7"),
    ("p.json", '["a cat", "water \\u001b pours"]', "p.json: item 2: U+001B (a control character) at character 7"),
    ("p.json", '["a cat \\ud800"]', "p.json: item 1: U+D800 (a lone surrogate) at character 7"),
])
def test_control_characters_are_refused_naming_the_line_and_the_character(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    with pytest.raises(PromptListError) as error:
        read_prompt_list(path)
    assert str(error.value) == f"{tmp_path}/{message}; {FIX}"


def test_tabs_and_any_line_end_are_text(tmp_path):
    path = write(tmp_path / "p.txt", "a cat\tjumps\r\nwater pours\rice\u2028melts\n")
    assert read_prompt_list(path) == ["a cat\tjumps", "water pours", "ice", "melts"]


@pytest.mark.parametrize("encoding, message", [
    ("utf-16-le", "looks like UTF-16 or UTF-32 text (50 of its 100 bytes are NUL)"),  # Notepad's "Unicode", no BOM
    ("utf-16-be", "looks like UTF-16 or UTF-32 text (50 of its 100 bytes are NUL)"),
    ("utf-16", "UTF-16 text (it starts with a UTF-16 byte-order mark)"),
    ("utf-32", "UTF-32 text (it starts with a UTF-32 byte-order mark)"),
])
def test_utf16_and_utf32_are_refused_with_or_without_a_byte_order_mark(tmp_path, encoding, message):
    path = write(tmp_path / "captions.txt", "\n".join(PROMPTS[:2]) + "\n", encoding=encoding)
    with pytest.raises(PromptListError) as error:
        read_prompt_list(path)
    assert str(error.value) == f"{path}: {message}; save the file as UTF-8"


def test_stdin_follows_the_same_rule():
    piped = io.TextIOWrapper(io.BytesIO("a cat jumps\n".encode("utf-16-le")), encoding="utf-8")
    with pytest.raises(PromptListError, match=r"^stdin: looks like UTF-16"):
        read_prompt_list(piped)
    with pytest.raises(PromptListError, match=r"^stdin:2: U\+0000 \(NUL\) at column 3"):
        read_prompt_list(io.StringIO("a cat\nwa\x00ter\n"))
    utf8 = io.TextIOWrapper(io.BytesIO("\ufeffa cat jumps\n猫が跳ぶ 🐱\n".encode("utf-8")), encoding="utf-8")
    assert read_prompt_list(utf8) == ["a cat jumps", "猫が跳ぶ 🐱"]
