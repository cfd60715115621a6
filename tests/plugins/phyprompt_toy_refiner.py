"""A trivial refiner kind, installed only for the tests (tests/plugins is on their path, and its dist-info
declares the `phyprompt.refiners` entry point). It is what a third-party refiner looks like: one module and one
entry point, and with no change to the nodes, the CLI or phyprompt/commands it gets its ComfyUI loader node
(PhyPromptLoadToyRefiner), its command-line option (`--style`), and is read from `--model`/`--refiner` when the
file is its own (`recognises`).

Its "weights" are a JSON file of physics phrases (`*.toyrefiner.json`), held as a tensor of phrase numbers so a
host can move them; prompt i of a call gets phrase seed + i, and the answer is written in the output contract,
so the project's parser and budget read it as any refiner's.
"""

from __future__ import annotations

import json
import os

import torch

from phyprompt.infra.devices import resolve_device, resolve_dtype
from phyprompt.infra.kinds import DEVICE, KindInfo, LoadOption, ModelFiles, dtype_option
from phyprompt.infra.lifecycle import LazyWeights
from phyprompt.language.budget import counter_for
from phyprompt.language.contract import format_output
from phyprompt.language.targets import get_target
from phyprompt.refiners import DEFAULT_MAX_NEW_TOKENS, Refinement, RefinerLoadError, check_request

SUFFIX = ".toyrefiner.json"


class ToyRefiner:
    in_process = True
    info = KindInfo(
        node_id="PhyPromptLoadToyRefiner",
        display_name="Load Toy Refiner",
        description="A refiner for tests: adds a physics phrase from its phrase file to the prompt.",
        search_aliases=("toy refiner",),
        source=ModelFiles("model", ("LLM",), marker="", suffixes=(SUFFIX,),
                          help="A *.toyrefiner.json phrase file under models/LLM."),
        options=(
            LoadOption("style", "plain", ("plain", "vivid"), help="vivid: the phrase in capitals."),
            dtype_option("The phrase table's dtype."),
            DEVICE,
        ),
    )

    def __init__(self, path: str, phrases: list[str], style: str, load):
        self.name = os.path.basename(path)
        self.phrases, self.style = phrases, style
        self._weights = LazyWeights(load, load())

    @classmethod
    def recognises(cls, source: str) -> bool:
        return source.lower().endswith(SUFFIX)

    @classmethod
    def load(cls, path: str, *, style: str = "plain", dtype: str = "auto", device: str = "auto",
             load_on: str | None = None) -> ToyRefiner:
        if not os.path.isfile(path):
            raise RefinerLoadError(f"toy refiner file not found: {path}")
        with open(path, encoding="utf-8") as handle:
            phrases = json.load(handle)["phrases"]
        runs_on = resolve_device(device)
        table_dtype = resolve_dtype(dtype, runs_on)

        def table() -> torch.nn.Module:
            module = torch.nn.Module()
            module.register_buffer("numbers", torch.arange(len(phrases), dtype=table_dtype))
            return module.to(load_on or runs_on)

        return cls(path, phrases, style, table)

    def refine(self, prompts, target="generic", *, seed: int = 0, temperature: float = 0.0,
               max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, target_tokenizer=None, progress=None,
               batch_size: int = 1) -> list[Refinement]:
        """See `phyprompt.refiners.Refiner`; one prompt at a time, whatever `batch_size` says."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        target = get_target(target) if isinstance(target, str) else target
        if not prompts:
            return []
        check_request(prompts, temperature, max_new_tokens)
        counter, numbers = counter_for(target, target_tokenizer), self._weights().numbers
        results = []
        for i, prompt in enumerate(prompts):
            phrase = self.phrases[int(numbers[(seed + i) % len(numbers)])]
            phrase = phrase.upper() if self.style == "vivid" else phrase
            answer = format_output(f"The toy refiner adds: {phrase}.", f"{prompt}, {phrase}")
            results.append(Refinement.from_answer(prompt, answer, target, counter))
            if progress is not None:
                progress(i + 1, len(prompts))
        return results

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"phrases": self._weights()}

    def release(self) -> None:
        self._weights.release()


def write_toy_refiner(folder: str | os.PathLike, name: str = "phrases") -> str:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name + SUFFIX)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"phrases": ["gravity pulls it down", "friction slows it", "momentum carries it on"]}, handle)
    return path
