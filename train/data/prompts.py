"""Plain prompt lists: evaluation prompts to keep out of training data, and inputs for teacher generation.

Accepted files: ``.txt`` (one prompt per line; blank lines and lines starting with ``#`` are skipped),
``.jsonl``/``.json`` (strings, or objects with a ``caption``, ``prompt`` or ``user_prompt`` field) and
``.csv`` (a ``caption``, ``prompt`` or ``user_prompt`` column).
"""

from __future__ import annotations

import csv
import json
import os

PROMPT_FIELDS = ("caption", "prompt", "user_prompt")


class PromptListError(ValueError):
    pass


def _prompt_of(value, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for name in PROMPT_FIELDS:
            if isinstance(value.get(name), str):
                return value[name]
    raise PromptListError(f"{where}: expected a string or an object with one of {', '.join(PROMPT_FIELDS)}")


def read_prompt_list(path: str | os.PathLike) -> list[str]:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise PromptListError(f"prompt list not found: {path}")
    extension = os.path.splitext(path)[1].lower()
    with open(path, encoding="utf-8-sig", newline="") as handle:  # -sig: spreadsheets write a BOM
        if extension == ".csv":
            reader = csv.DictReader(handle)
            column = next((c for c in PROMPT_FIELDS if c in (reader.fieldnames or ())), None)
            if column is None:
                raise PromptListError(f"{path}: no {', '.join(PROMPT_FIELDS)} column in the CSV header")
            prompts = [row[column] for row in reader]
        elif extension == ".json":
            try:
                values = json.load(handle)
            except json.JSONDecodeError as error:
                raise PromptListError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None
            if not isinstance(values, list):
                raise PromptListError(f"{path}: expected a JSON list")
            prompts = [_prompt_of(v, f"{path} item {i + 1}") for i, v in enumerate(values)]
        elif extension == ".jsonl":
            prompts = []
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        value = json.loads(line)
                    except json.JSONDecodeError as error:
                        raise PromptListError(f"{path}:{number}: not valid JSON ({error.msg})") from None
                    prompts.append(_prompt_of(value, f"{path}:{number}"))
        else:
            prompts = [line for line in handle.read().splitlines() if not line.lstrip().startswith("#")]
    return [p.strip() for p in prompts if p and p.strip()]
