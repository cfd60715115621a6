"""Teacher generation: a strong model writes (reasoning, refined prompt) for a list of user prompts.

The teacher is a refiner: opened from a `RefinerSpec`, asked with the project's own instruction, its answers
read by the project's own parser, so the data teaches exactly the contract the refiner is held to. Only answers the parser
accepts, with reasoning, inside the target's budget without shortening, are kept.

The output is appended and synced after every batch, and prompts already answered (or already rejected,
recorded in ``<out>.rejected.jsonl``) are skipped on a rerun, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from phyprompt.infra.endpoint import EndpointError, ServerSpec
from phyprompt.infra.progress import Progress
from phyprompt.language.prompt_lists import prompt_key
from phyprompt.language.targets import get_target
from phyprompt.refiners import Refinement, RefinerSpec

from .schema import Example, read_examples, write_examples

# Words in a teacher's reasoning that name a principle, and the category it belongs to. Teachers are not
# asked for a law list (it would lengthen every answer); this fills `laws` and `category` from the text.
LAW_KEYWORDS: tuple[tuple[str, str, str], ...] = (
    ("gravit", "gravity", "mechanics"),
    ("friction", "friction", "mechanics"),
    ("momentum", "conservation of momentum", "mechanics"),
    ("collision", "collision", "mechanics"),
    ("projectile", "projectile motion", "mechanics"),
    ("rotat", "rotation", "mechanics"),
    ("torque", "torque", "mechanics"),
    ("inertia", "inertia", "mechanics"),
    ("buoyan", "buoyancy", "fluids"),
    ("viscos", "viscosity", "fluids"),
    ("splash", "fluid splashing", "fluids"),
    ("surface tension", "surface tension", "fluids"),
    ("elastic", "elasticity", "deformation"),
    ("fractur", "fracture", "deformation"),
    ("shatter", "fracture", "deformation"),
    ("melt", "melting", "thermal"),
    ("boil", "boiling", "thermal"),
    ("combust", "combustion", "thermal"),
    ("burn", "combustion", "thermal"),
    ("evaporat", "evaporation", "thermal"),
    ("freez", "freezing", "thermal"),
    ("reflect", "reflection", "optics"),
    ("refract", "refraction", "optics"),
    ("shadow", "shadows", "optics"),
)


def laws_and_category(reasoning: str) -> tuple[tuple[str, ...], str]:
    text = reasoning.lower()
    found = [(law, category) for key, law, category in LAW_KEYWORDS if key in text]
    laws = tuple(dict.fromkeys(law for law, _ in found))
    return (laws or ("general physics",)), (found[0][1] if found else "other")


class TeacherError(RuntimeError):
    pass


#: the model name a teacher on a server is asked for when none is given: a server that serves one model (llama.cpp,
#: vLLM) accepts any name
SERVED_MODEL = "default"


class Teacher:
    """A refiner that writes training examples: a local model (or a hub id already in the cache) or one on an
    OpenAI-compatible server (vLLM, llama.cpp, Ollama, OpenAI itself), opened from its spec like any refiner,
    asked with the run's sampling settings. A local one answers a batch in one `generate`, a server a batch's
    prompts concurrently; a server's transient failures (timeouts, 429, 5xx) are retried with back-off, and
    anything else stops the run with one line saying why (`TeacherError`)."""

    def __init__(self, spec: RefinerSpec, *, temperature: float = 0.0, seed: int = 0, max_new_tokens: int = 512):
        self.refiner = spec.open()
        source = spec.source
        self.name = source.model if isinstance(source, ServerSpec) else os.path.basename(os.path.normpath(source))
        self.options = dict(temperature=temperature, seed=seed, max_new_tokens=max_new_tokens)

    def answer(self, prompts: Sequence[str], target: str) -> list[Refinement]:
        """One parsed answer per prompt, in order."""
        batch = {"batch_size": len(prompts)} if self.refiner.in_process else {}
        try:
            return self.refiner.refine(list(prompts), target, **self.options, **batch)
        except EndpointError as error:
            raise TeacherError(str(error)) from None


# Repairs that mean the answer was cut off by the token limit: the prompt may end mid-sentence.
CUT_OFF_REPAIRS = ("missing </prompt>", "cut-off tag at the end")


def rejection(refinement: Refinement) -> str | None:
    """Why a teacher's answer is not kept, or None when it is."""
    if not refinement.ok:
        return refinement.error or "unusable answer"
    if any(repair in CUT_OFF_REPAIRS for repair in refinement.repairs):
        return "answer cut off before </prompt> (raise --max-new-tokens)"
    if not refinement.reasoning.strip():
        return "no reasoning"
    if refinement.shortened or refinement.over_budget:
        return f"refined prompt over the {refinement.target} budget"
    return None


def example_id(prompt: str, target: str) -> str:
    """Stable across reruns and distinct across prompt lists written into the same file."""
    return "teacher-" + hashlib.sha1(f"{target}\n{prompt}".encode()).hexdigest()[:12]


@dataclass
class GenerateSummary:
    kept: int = 0
    rejected: int = 0
    already_done: int = 0

    def __str__(self) -> str:
        return f"kept {self.kept}, rejected {self.rejected}, skipped {self.already_done} already done"


def _cut_partial_last_line(path: Path) -> None:
    """A kill during a write can leave half a line at the end; drop it (in place, so no complete line is
    ever at risk) so appends start clean."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        os.truncate(path, data.rfind(b"\n") + 1)


def _done_prompts(out: Path, rejected: Path) -> set[str]:
    """`prompt_key`s of the prompts answered or rejected in earlier runs."""
    done = {prompt_key(e.user_prompt) for e in read_examples([out]).examples} if out.exists() else set()
    if rejected.exists():
        for line in rejected.read_text(encoding="utf-8").splitlines():
            try:
                done.add(prompt_key(json.loads(line)["user_prompt"]))
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                continue
    return done


def target_for(prompt: str, targets: Sequence[str]) -> str:
    """Each prompt's target, from its text alone: editing the list or resuming never moves a prompt to
    another target, and the targets share the prompts about evenly."""
    return targets[int(hashlib.sha1(prompt_key(prompt).encode()).hexdigest(), 16) % len(targets)]


def generate(teacher: Teacher, prompts: Sequence[str], out: str | os.PathLike, targets: Sequence[str],
             batch_size: int = 8, progress: Progress | None = None) -> GenerateSummary:
    """Answer every prompt not answered yet, each for one of `targets` (`target_for`); a prompt is never
    answered twice (case, spacing and punctuation ignored), so the file holds one example per prompt.

    `progress(done, total)` counts prompts answered in this run (the one progress protocol)."""
    if not targets:
        raise ValueError("give at least one target")
    for name in targets:
        get_target(name)
    out = Path(out)
    rejected_path = out.with_name(out.name.removesuffix(".jsonl") + ".rejected.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    _cut_partial_last_line(out)
    _cut_partial_last_line(rejected_path)
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, not {batch_size}")
    done = _done_prompts(out, rejected_path)
    summary = GenerateSummary()
    todo_by_target: dict[str, list[str]] = {}
    for prompt in (p.strip() for p in prompts):
        if prompt_key(prompt) in done:  # answered in an earlier run, or listed twice
            summary.already_done += 1
        else:
            done.add(prompt_key(prompt))
            todo_by_target.setdefault(target_for(prompt, targets), []).append(prompt)
    total, answered = sum(map(len, todo_by_target.values())), 0
    for target, todo in todo_by_target.items():
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            answers = teacher.answer(chunk, target)
            kept, dropped = [], []
            for prompt, refinement in zip(chunk, answers):
                reason = rejection(refinement)
                if reason:
                    dropped.append({"user_prompt": prompt, "target": target, "error": reason, "raw": refinement.raw})
                    continue
                laws, category = laws_and_category(refinement.reasoning)
                kept.append(Example(
                    id=example_id(prompt, target), user_prompt=prompt, reasoning=refinement.reasoning,
                    refined_prompt=refinement.prompt, laws=laws, category=category, target=target,
                    source=f"teacher:{teacher.name}",
                ))
            write_examples(out, kept, append=True)
            if dropped:
                with open(rejected_path, "a", encoding="utf-8") as handle:
                    handle.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in dropped))
            summary.kept += len(kept)
            summary.rejected += len(dropped)
            answered += len(chunk)
            if progress:
                progress(answered, total)
    return summary
