"""Builders that turn public physics data sets the user brings into training examples.

Neither data set ships with the project (PhyGenBench has no licence file; VideoPhy-2 is the evaluation
benchmark's family), so these read a copy the user downloaded. Rows whose refined prompt does not fit
the chosen target's budget, or whose user prompt was already seen, are skipped and counted. A source that
is not plain text (`phyprompt.language.prompt_lists`' rule: UTF-8, no control characters) is refused, naming the row.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import os
from collections import Counter
from dataclasses import dataclass, field

from phyprompt.language.budget import counter_for
from phyprompt.language.prompt_lists import check_value, prompt_key, read_text
from phyprompt.language.targets import get_target

from .schema import CATEGORIES, Example


class SourceFormatError(ValueError):
    pass


@dataclass
class BuildResult:
    examples: list[Example] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # reason -> rows

    def summary(self) -> str:
        parts = [f"{len(self.examples)} examples"]
        parts += [f"skipped {n} ({reason})" for reason, n in sorted(self.skipped.items())]
        return ", ".join(parts)


class _Collector:
    def __init__(self, target: str, source: str):
        self.target = get_target(target)
        self.counter = counter_for(self.target)
        self.source = source
        self.result = BuildResult()
        self.seen: set[str] = set()

    def add(self, user_prompt, reasoning, refined_prompt, laws, category, subcategory) -> None:
        # one line each, single spaces: what the refiner's parser would make of the text anyway
        user_prompt, reasoning, refined_prompt = (
            " ".join(str(x or "").split()) for x in (user_prompt, reasoning, refined_prompt)
        )
        laws = [law for law in (str(x).strip() for x in laws) if law]
        if not (user_prompt and reasoning and refined_prompt and laws):
            self.result.skipped["a field is empty"] += 1
            return
        key = prompt_key(user_prompt)
        if key in self.seen:
            self.result.skipped["repeated user prompt"] += 1
            return
        if self.counter.count(refined_prompt) > self.target.token_limit:
            self.result.skipped[f"over the {self.target.name} budget"] += 1
            return
        self.seen.add(key)
        self.result.examples.append(Example(
            id=f"{self.source}-{len(self.result.examples) + 1:05d}", user_prompt=user_prompt, reasoning=reasoning,
            refined_prompt=refined_prompt, laws=tuple(laws), category=category, target=self.target.name,
            source=self.source, subcategory=str(subcategory or "").strip(),
        ))


_PHYGENBENCH_TEXT = ("caption", "explicit_caption", "physical_laws", "main_category", "sub_category")


def _check_text(row: dict, columns, where: str) -> None:
    """Refuse a row whose text is not plain text (`phyprompt.language.prompt_lists`' rule) in a column a training
    example is made of. The file's own text is checked as it is read; a JSON escape or a Parquet cell only
    shows here."""
    for column in columns:
        value = row.get(column)
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str):
                check_value(text, f"{where}, {column}")


def _category(name: str) -> str:
    name = str(name or "").strip().lower()
    return name if name in CATEGORIES else "other"


def from_phygenbench(path: str | os.PathLike, target: str = "cogvideox") -> BuildResult:
    """PhyGenBench's `explicit_prompts.json`: caption → user prompt, explicit_caption → refined prompt,
    physical_laws → reasoning, main/sub category kept."""
    try:
        rows = json.loads(read_text(path))
    except json.JSONDecodeError as error:
        raise SourceFormatError(f"{os.fspath(path)} is not valid JSON ({error.msg}, line {error.lineno})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise SourceFormatError(
            f"{os.fspath(path)}: expected a JSON list of objects (PhyGenBench explicit_prompts.json)"
        )
    needed = {"caption", "explicit_caption", "physical_laws"}
    if rows and not needed <= set(rows[0]):
        raise SourceFormatError(
            f"{os.fspath(path)}: rows lack {', '.join(sorted(needed - set(rows[0])))}; is this explicit_prompts.json?"
        )
    collect = _Collector(target, "phygenbench")
    for number, row in enumerate(rows, 1):
        _check_text(row, _PHYGENBENCH_TEXT, f"{os.fspath(path)}: item {number}")
        laws = row.get("physical_laws")
        collect.add(
            row.get("caption"), laws, row.get("explicit_caption"),
            [row.get("sub_category") or row.get("main_category") or "physics"],
            _category(row.get("main_category")), row.get("sub_category"),
        )
    return collect.result


def _as_list(value) -> list[str]:
    """A rule list as VideoPhy-2 files store it: a real list, a JSON or Python list literal, or lines."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(x) for x in value]
    if hasattr(value, "tolist"):  # numpy arrays from Parquet
        return [str(x) for x in value.tolist()]
    text = str(value).strip()
    if not text or text.lower() in {"nan", "none", "[]"}:
        return []
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            try:
                parsed = ast.literal_eval(text)  # literals only: never evaluates code
            except (ValueError, SyntaxError):
                parsed = None
        if isinstance(parsed, list):
            return [str(x) for x in parsed]
    return [line.strip(" -•\t") for line in text.splitlines() if line.strip(" -•\t")]


def _read_table(path: str) -> list[dict]:
    if path.lower().endswith(".parquet"):
        try:
            import pyarrow.parquet as parquet
        except ImportError:
            raise SourceFormatError("reading Parquet needs pyarrow: pip install pyarrow (or convert to CSV)") from None
        return parquet.read_table(path).to_pylist()
    return list(csv.DictReader(io.StringIO(read_text(path), newline="")))  # "": line ends as csv wants them


_RULE_COLUMNS = ("physics_rules_followed", "physics_rules_unfollowed", "physics_rules_cannot_be_determined")


def from_videophy2(path: str | os.PathLike, target: str = "cogvideox") -> BuildResult:
    """VideoPhy-2 train (CSV or Parquet): caption → user prompt, upsampled_caption → refined prompt, and
    the physical rules annotated for the caption (followed or not by the rated video, they all apply to the
    scene) → laws and reasoning. The several rated videos of one caption give one example."""
    path = os.fspath(path)
    rows = _read_table(path)
    if rows and not {"caption", "upsampled_caption"} <= set(rows[0]):
        raise SourceFormatError(f"{path}: no caption/upsampled_caption columns; is this VideoPhy-2 train?")
    rules_by_caption: dict[str, list[str]] = {}
    for number, row in enumerate(rows, 2 if path.lower().endswith(".csv") else 1):  # CSV row 1 is the header
        _check_text(row, ("caption", "upsampled_caption", "category", *_RULE_COLUMNS), f"{path}: row {number}")
        rules = rules_by_caption.setdefault(prompt_key(str(row.get("caption") or "")), [])
        for column in _RULE_COLUMNS:
            rules.extend(r for r in _as_list(row.get(column)) if r not in rules)
    collect = _Collector(target, "videophy2-train")
    for row in rows:
        rules = rules_by_caption[prompt_key(str(row.get("caption") or ""))]
        reasoning = "The physical rules this scene must obey: " + " ".join(
            r if r.endswith((".", "!", "?")) else r + "." for r in rules
        ) if rules else ""
        collect.add(row.get("caption"), reasoning, row.get("upsampled_caption"), rules, "other", row.get("category"))
    return collect.result
