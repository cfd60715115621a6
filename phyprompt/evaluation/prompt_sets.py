"""Evaluation prompt sets: VideoPhy-2 test as the user downloaded it, or a plain prompt list.

- `.csv`, `.parquet` (needs pyarrow), `.jsonl`: a table with VideoPhy-2's columns (`caption`, and `is_hard`
  for `hard=True`; `category` and `action` are kept when present). VideoPhy-2 test has one row per
  (caption, generator) video: the set is one item per unique caption, the first row's values kept.
- anything else (`.txt`, `.json`): a prompt list read by `prompt_lists.read_prompt_list`.

Input a run must not silently change is refused with the row named: a table without a `caption` column,
`hard=True` without `is_hard`, a caption longer than `MAX_CAPTION_CHARS` (VideoPhy-2's are one sentence; a
10,000-character cell is a broken file, and the refiner and the judges would cut it), and a file or a cell
that is not plain text (the rule of `prompt_lists`: UTF-8, no control characters). Empty and blank
rows are skipped and repeats dropped (case, spacing and punctuation ignored, `prompt_lists.prompt_key`),
both counted in `PromptSet.notes`.

`limit=N` takes a fixed sample: the N captions with the smallest sha256 of their `prompt_key`, in file
order. It depends on the captions alone (not on their order, a random generator or the machine), so the
same N gives the same prompts on every machine, and a file that gains rows keeps most of its sample.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass, field

from ..language.prompt_lists import PromptListError, check_value, prompt_key, read_prompt_list, read_text

MAX_CAPTION_CHARS = 2000  # upsampled VideoPhy-2 captions are ~600; anything near this is a broken cell
TABLE_SUFFIXES = (".csv", ".parquet", ".jsonl")
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f", "", "nan", "none"}


class PromptSetError(PromptListError):
    """A prompt set that cannot be used as given; the message names the file, the row and the fix."""


@dataclass(frozen=True)
class Item:
    caption: str
    category: str = ""
    action: str = ""


@dataclass(frozen=True)
class PromptSet:
    name: str
    items: tuple[Item, ...]
    notes: tuple[str, ...] = field(default=())  # what was skipped or sampled, for the report

    @property
    def captions(self) -> list[str]:
        return [item.caption for item in self.items]


def load_prompt_set(path: str | os.PathLike[str], *, hard: bool = False, limit: int | None = None) -> PromptSet:
    """The prompts of `path` (see the module docstring), the hard subset with `hard`, `limit` of them."""
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    notes: list[str] = []
    if suffix in TABLE_SUFFIXES:
        items = _table_items(path, _read_rows(path, suffix), hard, notes)
    else:
        if hard:
            raise PromptSetError(f"{path}: --hard needs VideoPhy-2's is_hard column: give the test set as "
                                 f"{', '.join(TABLE_SUFFIXES)}, not a plain prompt list")
        captions = read_prompt_list(path)
        items = _unique([Item(c) for c in captions], notes)
        for number, item in enumerate(items, 1):
            _check_length(item.caption, f"{path}: prompt {number}")
    if not items:
        raise PromptSetError(f"{path} holds no prompts" + (" marked is_hard" if hard else ""))
    if limit is not None:
        if limit < 1:
            raise PromptSetError(f"limit must be at least 1, not {limit}")
        if limit < len(items):
            chosen = set(sorted(range(len(items)), key=lambda i: _rank(items[i].caption))[:limit])
            notes.append(f"a fixed sample of {limit} of {len(items)} prompts (smallest sha256 of the caption)")
            items = [item for i, item in enumerate(items) if i in chosen]
    name = os.path.splitext(os.path.basename(path))[0] + ("-hard" if hard else "")
    return PromptSet(name=name, items=tuple(items), notes=tuple(notes))


def _rank(caption: str) -> str:
    return hashlib.sha256(prompt_key(caption).encode("utf-8")).hexdigest()


def _read_rows(path: str, suffix: str) -> list[dict]:
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as parquet
        except ImportError:
            raise PromptSetError(f"reading {path} needs pyarrow: pip install pyarrow (or give it as CSV)") from None
        try:
            return parquet.read_table(path).to_pylist()
        except OSError as error:
            raise PromptSetError(f"cannot read {path}: {error.strerror or error}") from None
    handle = io.StringIO(read_text(path), newline="")  # newline="": line ends as the csv module wants them
    if suffix == ".csv":
        return list(csv.DictReader(handle))
    return [_json_row(line, path, number) for number, line in enumerate(handle, 1) if line.strip()]


def _json_row(line: str, path: str, number: int) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise PromptSetError(f"{path}:{number}: not valid JSON ({error.msg})") from None
    if not isinstance(row, dict):
        raise PromptSetError(f"{path}:{number}: expected a JSON object with a caption field")
    return row


def _table_items(path: str, rows: list[dict], hard: bool, notes: list[str]) -> list[Item]:
    columns = set().union(*(row.keys() for row in rows)) if rows else set()
    missing = [c for c in ("caption", "is_hard" if hard else None) if c and c not in columns]
    if missing:
        found = ", ".join(sorted(map(str, columns))) or "none"
        raise PromptSetError(f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                             f"(found: {found}); give VideoPhy-2 test (videophysics/videophy2_test) as CSV, "
                             "Parquet or JSONL")
    items, blank = [], 0
    for number, row in enumerate(rows, 2 if path.lower().endswith(".csv") else 1):  # CSV row 1 is the header
        where = f"{path}: {'line' if path.lower().endswith('.jsonl') else 'row'} {number}"
        caption = row.get("caption")
        caption = "" if caption is None else str(caption).strip()
        if not caption:
            blank += 1
            continue
        # the file's text was checked as it was read; JSON escapes and Parquet cells are checked here
        category, action = str(row.get("category") or ""), str(row.get("action") or "")
        for column, text in (("caption", caption), ("category", category), ("action", action)):
            check_value(text, f"{where}, {column}")
        _check_length(caption, where)
        if hard and not _flag(row.get("is_hard"), where):
            continue
        items.append(Item(caption, category, action))
    if blank:
        notes.append(f"skipped {blank} row{'s' if blank > 1 else ''} without a caption")
    return _unique(items, notes)


def _flag(value, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise PromptSetError(f"{where}: is_hard must be true/false or 1/0, not {value!r}")


def _check_length(caption: str, where: str) -> None:
    if len(caption) > MAX_CAPTION_CHARS:
        raise PromptSetError(f"{where}: the caption is {len(caption):,} characters, more than the "
                             f"{MAX_CAPTION_CHARS:,} an evaluation prompt may have (VideoPhy-2's are one "
                             "sentence); fix or remove it")


def _unique(items: list[Item], notes: list[str]) -> list[Item]:
    kept, seen = [], set()
    for item in items:
        key = prompt_key(item.caption)
        if key not in seen:
            seen.add(key)
            kept.append(item)
    if len(kept) < len(items):
        repeats = len(items) - len(kept)
        notes.append(f"kept one row per caption: dropped {repeats} repeat{'s' if repeats > 1 else ''}")
    return kept
