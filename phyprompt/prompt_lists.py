"""Prompt lists: many prompts in one file, for `phyprompt refine --file`, evaluation sets and training data.

Accepted files, the format picked by the suffix:

- ``.txt`` (and any other suffix): one prompt per line; lines starting with ``#`` are comments;
- ``.jsonl``: one JSON value per line, ``.json``: one JSON list; each value a string, or an object with a
  ``caption``, ``prompt`` or ``user_prompt`` field (the first of these that holds a string);
- ``.csv``: a header row with a ``caption``, ``prompt`` or ``user_prompt`` column.

Every format: UTF-8 (a byte-order mark is fine), prompts stripped of surrounding spaces, empty and blank
prompts skipped, order kept. With ``unique=True`` a prompt that repeats an earlier one (case, spacing and
punctuation ignored, see `prompt_key`) is dropped and the first kept.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterable
from typing import TextIO

PROMPT_FIELDS = ("caption", "prompt", "user_prompt")

_NOT_WORD = re.compile(r"[^\w]+")


class PromptListError(ValueError):
    """A prompt list that cannot be read; the message names the file (and line) and what is wrong."""


def prompt_key(text: str) -> str:
    """What two prompts must share to count as the same: case, spacing and punctuation ignored."""
    return _NOT_WORD.sub(" ", text.lower()).strip()


def read_prompt_list(source: str | os.PathLike[str] | TextIO, *, unique: bool = False) -> list[str]:
    """The prompts of a file (its suffix picks the format) or of an open text stream such as
    `sys.stdin` (read as ``.txt``). Raises `PromptListError` for a file that cannot be read or parsed."""
    if hasattr(source, "read"):
        return _cleaned(_text_prompts(source.read()), unique)
    path = os.fspath(source)
    extension = os.path.splitext(path)[1].lower()
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:  # -sig: spreadsheets write a BOM
            if extension == ".csv":
                prompts = _csv_prompts(handle, path)
            elif extension == ".json":
                prompts = _json_prompts(handle, path)
            elif extension == ".jsonl":
                prompts = _jsonl_prompts(handle, path)
            else:
                prompts = _text_prompts(handle.read())
    except UnicodeDecodeError:
        raise PromptListError(f"{path}: not UTF-8 text") from None
    except OSError as error:
        raise PromptListError(f"cannot read {path}: {error.strerror or error}") from None
    return _cleaned(prompts, unique)


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
        return value
    if isinstance(value, dict):
        for name in PROMPT_FIELDS:
            if isinstance(value.get(name), str):
                return value[name]
    raise PromptListError(f"{where}: expected a string or an object with one of {', '.join(PROMPT_FIELDS)}")
