"""Prompt lists: many prompts in one file, for `phyprompt refine --file`, evaluation sets and training data.

Accepted files, the format picked by the suffix:

- ``.txt`` (and any other suffix): one prompt per line; lines starting with ``#`` are comments;
- ``.jsonl``: one JSON value per line, ``.json``: one JSON list; each value a string, or an object with a
  ``caption``, ``prompt`` or ``user_prompt`` field (the first of these that holds a string);
- ``.csv``: a header row with a ``caption``, ``prompt`` or ``user_prompt`` column.

Every format: plain UTF-8 text (see below), prompts stripped of surrounding spaces, empty and blank prompts
skipped, order kept. With ``unique=True`` a prompt that repeats an earlier one (case, spacing and
punctuation ignored, see `prompt_key`) is dropped and the first kept.

Plain text, the one rule of every file of prompts, captions or training rows (this reader, evaluation
sets, `judge --captions`, the training data and its builders all apply it through `read_text`,
`decode_text`, `text_fault` and `check_value`):

- UTF-8; a UTF-8 byte-order mark is dropped (spreadsheets write one). A UTF-16 or UTF-32 file is refused
  with "save it as UTF-8", also when its byte-order mark says exactly what it is: the files are documented
  as UTF-8, the project appends UTF-8 to a data file it resumes (`python -m train.data teach --out`), and
  other tools that read the same files expect UTF-8 (pandas, for one, by default), so one encoding means a
  file that passes here passes there. Without a byte-order mark such a file is recognised
  by its NUL bytes (one in every two or four bytes of Latin text);
- no control characters: U+0000-U+001F but tab (TSV-style captions hold tabs), line feed and carriage
  return (line ends), U+007F (DEL) and U+0080-U+009F (C1) are refused, and so are lone surrogates (only a
  JSON ``\\ud800`` escape can make one). A NUL or an escape code in a prompt is never what a user meant,
  and it would reach the tokenizers, the video model and the judge as is.

A refusal names the file, the line (or item, row) and the character as U+XXXX.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
from collections.abc import Iterable
from typing import TextIO

PROMPT_FIELDS = ("caption", "prompt", "user_prompt")

_NOT_WORD = re.compile(r"[^\w]+")
# what is not text (see the module docstring): C0 controls but tab/LF/CR, DEL, C1 controls, lone surrogates
_NOT_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_LINE_END = re.compile(r"\r\n|\r|\n")
_UTF8 = "save the file as UTF-8"
_FIX = "prompt, caption and training files must be plain text: delete the character"
_WIDE_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),  # UTF-32 LE's begins as UTF-16 LE's
              (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))


class PromptListError(ValueError):
    """A prompt list that cannot be read; the message names the file (and line) and what is wrong."""


class NotTextError(PromptListError):
    """A file that is not plain UTF-8 text (see the module docstring). `file`, `line` (0: the file as a
    whole) and `reason` are kept apart for readers that list problems line by line (the training data)."""

    def __init__(self, file: str, line: int, reason: str):
        self.file, self.line, self.reason = file, line, reason
        super().__init__(f"{file}:{line}: {reason}" if line else f"{file}: {reason}")


def read_text(path: str | os.PathLike[str]) -> str:
    """The text of a file of prompts, captions or training rows, by the plain-text rule of the module
    docstring. Raises `NotTextError` naming the line, or `PromptListError` for a file that cannot be read."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise PromptListError(f"cannot read {path}: {error.strerror or error}") from None
    text = decode_text(data, path)
    check_text(text, path)
    return text


def decode_text(data: bytes, name: str) -> str:
    """`data` as UTF-8 text without its byte-order mark; `NotTextError` for UTF-16/32 (with or without a
    byte-order mark) and for bytes that are not UTF-8, naming the line. Control characters are left to
    `check_text` / `text_fault`."""
    for bom, encoding in _WIDE_BOMS:
        if data.startswith(bom):
            raise NotTextError(name, 0, f"{encoding} text (it starts with a {encoding} byte-order mark); {_UTF8}")
    _refuse_wide_text(data.count(0), len(data), name)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line, column = _position(data[:error.start].decode("utf-8", "replace"), None)
        raise NotTextError(name, line, f"not UTF-8 text (byte 0x{data[error.start]:02X} at column {column}); "
                                       f"{_UTF8}") from None


def check_text(text: str, name: str) -> None:
    """`NotTextError` at the first character of `text` (a whole file's, already decoded) that is not text."""
    found = _NOT_TEXT.search(text)
    if found:
        line, column = _position(text, found.start())
        raise NotTextError(name, line, f"{_describe(found[0])} at column {column}; {_FIX}")


def text_fault(text: str, unit: str = "character") -> str | None:
    """What makes `text` (one value, or with `unit="column"` one line of a file) not plain text: its first
    forbidden character as "U+0000 (NUL) at character 7", or None when it is all text."""
    found = _NOT_TEXT.search(text)
    return f"{_describe(found[0])} at {unit} {found.start() + 1}" if found else None


def check_value(text: str, where: str) -> str:
    """`text` itself when it is plain text, else `PromptListError` naming `where`. For values decoded from
    a file (a JSON ``\\u0000`` escape, a Parquet cell), which the file's own text check does not see."""
    fault = text_fault(text)
    if fault:
        raise PromptListError(f"{where}: {fault}; {_FIX}")
    return text


def _refuse_wide_text(nuls: int, length: int, name: str) -> None:
    # Latin text in UTF-16 is half NUL bytes (UTF-32: three quarters); a stray NUL in UTF-8 is named by line
    if nuls and nuls * 4 >= length and nuls < length:
        raise NotTextError(name, 0, f"looks like UTF-16 or UTF-32 text ({nuls} of its {length} bytes are NUL); "
                                    f"{_UTF8}")


def _position(text: str, index: int | None) -> tuple[int, int]:
    """1-based (line, column) of `text[index]` (None: of the end of `text`); CR, LF and CRLF end lines."""
    before = text if index is None else text[:index]
    ends = list(_LINE_END.finditer(before))
    return len(ends) + 1, len(before) - (ends[-1].end() if ends else 0) + 1


def _describe(char: str) -> str:
    code = ord(char)
    kind = ("NUL" if code == 0 else "DEL" if code == 0x7F else "a lone surrogate" if 0xD800 <= code <= 0xDFFF
            else "a control character")
    return f"U+{code:04X} ({kind})"


def prompt_key(text: str) -> str:
    """What two prompts must share to count as the same: case, spacing and punctuation ignored."""
    return _NOT_WORD.sub(" ", text.lower()).strip()


def read_prompt_list(source: str | os.PathLike[str] | TextIO, *, unique: bool = False) -> list[str]:
    """The prompts of a file (its suffix picks the format) or of an open text stream such as
    `sys.stdin` (read as ``.txt``). Raises `PromptListError` for a file that cannot be read, is not plain
    text (`NotTextError`) or cannot be parsed."""
    if hasattr(source, "read"):
        return _cleaned(_text_prompts(_stream_text(source)), unique)
    path = os.fspath(source)
    extension = os.path.splitext(path)[1].lower()
    handle = io.StringIO(read_text(path), newline="")  # newline="": line ends as the csv module wants them
    if extension == ".csv":
        prompts = _csv_prompts(handle, path)
    elif extension == ".json":
        prompts = _json_prompts(handle, path)
    elif extension == ".jsonl":
        prompts = _jsonl_prompts(handle, path)
    else:
        prompts = _text_prompts(handle.read())
    return _cleaned(prompts, unique)


def _stream_text(stream: TextIO) -> str:
    """A stream's text by the same rule as a file's: stdin's bytes where it has them (a PowerShell pipe may
    carry UTF-16), else its text."""
    buffer = getattr(stream, "buffer", None)
    if buffer is not None:
        text = decode_text(buffer.read(), "stdin")
    else:
        text = stream.read()
        _refuse_wide_text(text.count("\0"), len(text), "stdin")  # a UTF-16 pipe decoded byte by byte
    check_text(text, "stdin")
    return text


def _cleaned(prompts: Iterable[str | None], unique: bool) -> list[str]:
    kept, seen = [], set()
    for prompt in (p.strip() for p in prompts if p):
        if not prompt:
            continue
        if unique:
            key = prompt_key(prompt)
            if key in seen:
                continue
            seen.add(key)
        kept.append(prompt)
    return kept


def _text_prompts(text: str) -> list[str]:
    # a stream (stdin) is not opened with utf-8-sig, and PowerShell pipes start with a BOM
    lines = text.removeprefix("\ufeff").splitlines()
    return [line for line in lines if not line.lstrip().startswith("#")]


def _csv_prompts(handle: TextIO, path: str) -> list[str | None]:
    reader = csv.DictReader(handle)
    column = next((c for c in PROMPT_FIELDS if c in (reader.fieldnames or ())), None)
    if column is None:
        raise PromptListError(f"{path}: no {', '.join(PROMPT_FIELDS)} column in the CSV header")
    return [row[column] for row in reader]  # None where a row is shorter than the header


def _json_prompts(handle: TextIO, path: str) -> list[str]:
    try:
        values = json.load(handle)
    except json.JSONDecodeError as error:
        raise PromptListError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(values, list):
        raise PromptListError(f"{path}: expected a JSON list of prompts")
    return [_prompt_of(value, f"{path}: item {number}") for number, value in enumerate(values, 1)]


def _jsonl_prompts(handle: TextIO, path: str) -> list[str]:
    prompts = []
    for number, line in enumerate(handle, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise PromptListError(f"{path}:{number}: not valid JSON ({error.msg})") from None
        prompts.append(_prompt_of(value, f"{path}:{number}"))
    return prompts


def _prompt_of(value: object, where: str) -> str:
    if isinstance(value, str):
        return check_value(value, where)
    if isinstance(value, dict):
        for name in PROMPT_FIELDS:
            if isinstance(value.get(name), str):
                return check_value(value[name], where)
    raise PromptListError(f"{where}: expected a string or an object with one of {', '.join(PROMPT_FIELDS)}")
