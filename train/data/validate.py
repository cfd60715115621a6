"""Checks a data set row by row and says what is wrong with each bad row.

A row is good when the answer built from it is one the project's own parser accepts without repairs,
its refined prompt fits the target's token budget, it repeats no other row (same id or same user
prompt), and its user prompt is not one of the evaluation prompts it must stay apart from.
"""

from __future__ import annotations

from phyprompt.language.budget import TokenCounter, counter_for
from phyprompt.language.contract import parse_output
from phyprompt.language.instruction import ASSISTANT_PREFIX, answer_continuation
from phyprompt.language.prompt_lists import prompt_key
from phyprompt.language.targets import get_target

from .schema import Example, Loaded, Problem


def training_answer(example: Example) -> str:
    """The full assistant answer an example teaches, as the refiner's parser will see it."""
    return ASSISTANT_PREFIX + answer_continuation(example.reasoning, example.refined_prompt)


def example_errors(example: Example, counter: TokenCounter) -> list[str]:
    """What makes one example unusable on its own (parser and budget), independent of the other rows."""
    errors = []
    parsed = parse_output(training_answer(example))
    if not parsed.ok:
        errors.append(f"the parser rejects the answer: {parsed.error}")
    elif parsed.repairs:
        errors.append(f"the parser has to repair the answer ({', '.join(parsed.repairs)}); remove tags from the text")
    elif parsed.prompt != example.refined_prompt:
        errors.append("the parser reads a different refined prompt than the row holds; remove tags from the text")
    target = get_target(example.target)
    used = counter.count(example.refined_prompt)
    if used > target.token_limit:
        errors.append(
            f"refined prompt uses {used} tokens ({counter.description}), over the {target.token_limit}-token "
            f"budget of {target.name}; shorten it"
        )
    return errors


def validate(loaded: Loaded, exclude: dict[str, str] | None = None,
             counters: dict[str, TokenCounter] | None = None) -> list[Problem]:
    """Every problem in `loaded`: reading problems first, then per-row ones in file order.

    `exclude` maps `prompt_key(prompt)` to the name of the evaluation list it came from; `counters`
    gives a real tokenizer per target name (the conservative estimate is used for the others).
    """
    exclude = exclude or {}
    counters = dict(counters or {})
    problems = list(loaded.problems)
    first_id: dict[str, tuple[str, int]] = {}
    first_prompt: dict[str, tuple[str, int]] = {}
    for example, (file, line) in zip(loaded.examples, loaded.origins):
        counter = counters.setdefault(example.target, counter_for(get_target(example.target)))
        problems.extend(Problem(file, line, message) for message in example_errors(example, counter))
        if example.id in first_id:
            where = first_id[example.id]
            problems.append(Problem(file, line, f"duplicate id {example.id!r} (first at {where[0]}:{where[1]})"))
        else:
            first_id[example.id] = (file, line)
        key = prompt_key(example.user_prompt)
        if key in first_prompt:
            where = first_prompt[key]
            problems.append(Problem(file, line, f"duplicate user prompt (first at {where[0]}:{where[1]})"))
        else:
            first_prompt[key] = (file, line)
        if key in exclude:
            problems.append(Problem(file, line, f"user prompt is in the evaluation list {exclude[key]}; drop the row"))
    return problems
