"""The training-example schema: one JSON object per line (JSONL), UTF-8.

Fields (all strings unless noted):

- ``id``: unique within a data set, e.g. ``mech-001``.
- ``user_prompt``: what a user typed into a video generator.
- ``reasoning``: the physical reasoning about that scene (goes between ``<think>`` tags).
- ``refined_prompt``: the physics-explicit video prompt (goes between ``<prompt>`` tags); it must fit the
  target's token budget.
- ``laws``: list of strings, the physical principles involved (``["gravity", "kinetic friction"]``).
- ``category``: one of ``CATEGORIES``; ``subcategory``: free text, may be empty.
- ``target``: the video model the prompt is written for, one of ``phyprompt.language.targets.TARGET_NAMES``; it sets
  the token budget and the style hint in the instruction.
- ``source``: where the row comes from (``phyprompt-seed``, ``phygenbench``, ``videophy2-train``,
  ``teacher:<model>``).

Reading never stops at a bad line: malformed lines are reported with their line numbers and every good
line is kept. A line that is not plain text (a control character, `phyprompt.language.prompt_lists`' rule) is such a
bad line; a file that is not UTF-8 (UTF-16, say) is reported as a whole and none of its lines is read.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from phyprompt.infra.files import write_text_atomic
from phyprompt.language.prompt_lists import NotTextError, decode_text, text_fault
from phyprompt.language.targets import TARGET_NAMES

CATEGORIES = ("mechanics", "fluids", "deformation", "thermal", "optics", "interactions", "material", "other")

# The targets an example can be written for: the video models with a known budget ("generic" is a
# fallback for inference, not something to train for).
TRAINING_TARGETS = tuple(t for t in TARGET_NAMES if t != "generic")

REQUIRED_TEXT = ("id", "user_prompt", "reasoning", "refined_prompt", "category", "target", "source")
FIELDS = REQUIRED_TEXT + ("laws", "subcategory")


@dataclass(frozen=True)
class Example:
    id: str
    user_prompt: str
    reasoning: str
    refined_prompt: str
    laws: tuple[str, ...]
    category: str
    target: str
    source: str
    subcategory: str = ""

    def to_dict(self) -> dict:
        row = asdict(self)
        row["laws"] = list(self.laws)
        return {name: row[name] for name in FIELDS}


@dataclass(frozen=True)
class Problem:
    file: str
    line: int  # 0 when the problem is about the file as a whole
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}" if self.line else f"{self.file}: {self.message}"


@dataclass
class Loaded:
    """Rows read from one or more files, with where each came from, and what could not be read."""

    examples: list[Example] = field(default_factory=list)
    origins: list[tuple[str, int]] = field(default_factory=list)  # (file, line) per example
    problems: list[Problem] = field(default_factory=list)


def example_from_dict(row: object) -> tuple[Example | None, list[str]]:
    """An `Example` from a decoded JSON value, or None and what is wrong with it."""
    if not isinstance(row, dict):
        return None, [f"expected a JSON object, got {type(row).__name__}"]
    errors = []
    for name in REQUIRED_TEXT:
        value = row.get(name)
        if value is None:
            errors.append(f"missing field {name!r}")
        elif not isinstance(value, str) or not value.strip():
            errors.append(f"field {name!r} must be a non-empty string")
    laws = row.get("laws")
    if laws is None:
        errors.append("missing field 'laws'")
    elif not isinstance(laws, list) or not laws or not all(isinstance(x, str) and x.strip() for x in laws):
        errors.append("field 'laws' must be a non-empty list of strings")
    subcategory = row.get("subcategory", "")
    if not isinstance(subcategory, str):
        errors.append("field 'subcategory' must be a string")
    # the line's own text is checked as it is read; a JSON escape (\\u0000) shows only in the values
    texts = [(name, row.get(name)) for name in FIELDS]
    texts += [("laws", law) for law in (laws if isinstance(laws, list) else ())]
    for name, value in texts:
        fault = text_fault(value) if isinstance(value, str) else None
        if fault:
            errors.append(f"field {name!r} holds {fault}; it must be plain text")
    unknown = sorted(set(row) - set(FIELDS))
    if unknown:
        errors.append(f"unknown field(s) {', '.join(map(repr, unknown))}; the schema has {', '.join(FIELDS)}")
    if isinstance(row.get("category"), str) and row["category"] not in CATEGORIES:
        errors.append(f"category {row['category']!r} is not one of {', '.join(CATEGORIES)}")
    if isinstance(row.get("target"), str) and row["target"] not in TARGET_NAMES:
        errors.append(f"target {row['target']!r} is not one of {', '.join(TARGET_NAMES)}")
    if errors:
        return None, errors
    return Example(
        id=row["id"].strip(), user_prompt=row["user_prompt"].strip(), reasoning=row["reasoning"].strip(),
        refined_prompt=row["refined_prompt"].strip(), laws=tuple(x.strip() for x in laws),
        category=row["category"], target=row["target"], source=row["source"].strip(),
        subcategory=subcategory.strip(),
    ), []


def read_examples(paths) -> Loaded:
    """Every valid row of the given JSONL files; each bad line becomes a `Problem` with its line number."""
    loaded = Loaded()
    for path in map(os.fspath, paths):
        try:
            with open(path, "rb") as handle:
                text = decode_text(handle.read(), path)
        except OSError as error:
            loaded.problems.append(Problem(path, 0, f"cannot read: {error.strerror or error}"))
            continue
        except NotTextError as error:  # UTF-16 or not UTF-8: no line of it can be trusted
            loaded.problems.append(Problem(path, error.line, error.reason))
            continue
        for number, line in enumerate(io.StringIO(text, newline=""), 1):
            if not line.strip():
                continue
            fault = text_fault(line, "column")  # before JSON, which would call a raw control character a syntax error
            if fault:
                loaded.problems.append(Problem(path, number, f"{fault}; the line must be plain text"))
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                loaded.problems.append(Problem(path, number, f"not valid JSON ({error.msg})"))
                continue
            example, errors = example_from_dict(value)
            if example is None:
                loaded.problems.extend(Problem(path, number, message) for message in errors)
            else:
                loaded.examples.append(example)
                loaded.origins.append((path, number))
    return loaded


def write_examples(path: str | os.PathLike, examples, append: bool = False) -> None:
    """Write rows as JSONL; a new file appears complete or not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(e.to_dict(), ensure_ascii=False) + "\n" for e in examples)
    if append:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())
        return
    write_text_atomic(path, lines)
