"""What every refiner is and returns, without importing torch or transformers.

A refiner turns user prompts into physics-explicit prompts for a target video model. It may run in this
process (`local`: a transformers model) or on a server (`api`: an OpenAI-compatible endpoint); the nodes,
the CLI, training and evaluation hold it through the `Refiner` protocol and never ask which it is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol, Sequence

from ..infra.checkpoints import ModelFolderError
from ..infra.lifecycle import HoldsWeights
from ..infra.progress import OptionalProgress
from ..infra.registry import Registry
from ..language.budget import TokenCounter, counter_for, fit_to_budget
from ..language.contract import parse_output
from ..language.targets import Target, get_target

DEFAULT_MAX_NEW_TOKENS = 512


class RefinerLoadError(ModelFolderError):
    """A refiner or adapter could not be loaded; the message says why and what to do."""


# kind -> "module:Class", relative to this package. Other packages add refiner kinds as entry points in the
# group `phyprompt.refiners`. Each class describes itself in `info` (an `infra.kinds.KindInfo`: its loader node,
# its source, its load options) and has `load(source, **options)`: the path (or for a kind on a server, the
# `ServerSpec`) and the options of its description; a kind in this process also takes `load_on`, where its
# weights wait until a host moves them to `device`. Optional: `recognises(source) -> bool`, for a kind whose
# sources can be told apart from the `local` refiner's (a file suffix of its own), and `resolve(source,
# options)`, the files a built-in source stands for. `spec.RefinerSpec` opens them.
REFINERS = Registry("refiner kind", __package__, {
    "local": "local:LocalRefiner",
    "api": "api:APIRefiner",
}, group="phyprompt.refiners")


@dataclass(frozen=True)
class Refinement:
    """One refined prompt. `prompt` is always usable: the refined text, or the original on failure."""

    original: str
    prompt: str
    reasoning: str
    ok: bool
    error: str | None
    target: str
    tokens: int
    token_limit: int
    token_counter: str
    shortened: bool = False
    dropped: str = ""
    repairs: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())
    raw: str = ""

    @property
    def over_budget(self) -> bool:
        return self.tokens > self.token_limit

    def report(self) -> str:
        """One line for people: token use, and anything that went wrong or was changed."""
        counted = "estimated" if self.token_counter == "estimate" else f"counted with {self.token_counter}"
        parts = [f"{self.tokens}/{self.token_limit} tokens for {self.target} ({counted})"]
        if self.ok:
            parts.append("refined")
        else:
            parts.append(f"kept the original prompt: {self.error}")
        if self.shortened:
            parts.append(f"shortened to fit, dropped: {self.dropped!r}")
        if self.over_budget:
            parts.append("over budget: the text encoder will truncate it")
        if self.repairs:
            parts.append("repaired " + ", ".join(self.repairs))
        parts.extend(self.notes)
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return asdict(self) | {"report": self.report()}

    @classmethod
    def from_answer(cls, original: str, answer: str, target: str | Target, counter: TokenCounter | None = None,
                    notes: tuple[str, ...] = ()) -> "Refinement":
        """Parse a refiner's raw answer for `original` and fit it to the target's budget."""
        target = get_target(target) if isinstance(target, str) else target
        counter = counter or counter_for(target)
        parsed = parse_output(answer)
        common = dict(
            original=original, reasoning=parsed.reasoning, target=target.name, token_limit=target.token_limit,
            token_counter=counter.description, repairs=parsed.repairs, notes=notes, raw=answer,
        )
        if not parsed.ok:
            return cls(prompt=original, ok=False, error=parsed.error, tokens=counter.count(original), **common)
        fitted = fit_to_budget(parsed.prompt, counter, target.token_limit)
        if not fitted.text:
            return cls(prompt=original, ok=False, error="no part of the refined prompt fits the budget",
                       tokens=counter.count(original), **common)
        return cls(prompt=fitted.text, ok=True, error=None, tokens=fitted.tokens,
                   shortened=fitted.shortened, dropped=fitted.dropped, **common)


class Refiner(HoldsWeights, Protocol):
    """Refines prompts for a target, and holds its weights as every model does (`lifecycle`).
    Implementations: `local.LocalRefiner`, `api.APIRefiner`, and the kinds of `REFINERS`."""

    def refine(
        self,
        prompts: str | Sequence[str],
        target: str | Target = "generic",
        *,
        seed: int = 0,
        temperature: float = 0.0,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        target_tokenizer=None,
        progress: OptionalProgress = None,
    ) -> list[Refinement]:
        """One `Refinement` per prompt, in order. Prompt i of a call is sampled with seed + i, so the same
        seed and inputs give the same outputs. `target_tokenizer` (a tokenizer, a tokenizer folder or a
        TokenCounter) counts the budget exactly; without it the budget is estimated. `progress(done, total)`
        reports work done and may raise to cancel. A refiner in this process (`in_process`) also takes
        `batch_size`, how many prompts it generates at once (a server batches on its own side)."""



def check_request(prompts: Sequence[str], temperature: float, max_new_tokens: int) -> None:
    """The arguments every refiner rejects the same way, with a message that says what to change."""
    for i, prompt in enumerate(prompts):
        if not prompt or not prompt.strip():
            where = "the prompt" if len(prompts) == 1 else f"prompt {i + 1}"
            raise ValueError(f"{where} is empty: describe the scene you want to see")
    if temperature < 0:
        raise ValueError(f"temperature must be 0 (greedy) or more, not {temperature}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, not {max_new_tokens}")
