"""The local refiner: batched, seeded generation with a transformers model in this process, parsed and
fitted to a budget."""

from __future__ import annotations

import copy
import inspect
import logging
import os
from typing import Sequence

import torch
from transformers import LogitsProcessor, StoppingCriteria, TopKLogitsWarper, TopPLogitsWarper

from ..infra.kinds import DEVICE, KindInfo, LoadOption, ModelFiles, dtype_option
from ..infra.lifecycle import LazyWeights
from ..infra.progress import OptionalProgress
from ..language.budget import TokenizerCounter, counter_for, fit_to_budget
from ..language.contract import PROMPT_CLOSE
from ..language.instruction import ASSISTANT_PREFIX, build_messages, render_prompt
from ..language.targets import TARGETS, Target, get_target
from .base import DEFAULT_MAX_NEW_TOKENS, Refinement, check_request
from .builtin import BUILTIN_LABEL, BUILTIN_MODEL, INSTALL, is_builtin
from .loading import GGUF_SUFFIX, QUANTIZATIONS, LoadSpec, load_model_and_tokenizer, resolve_builtin
from .prefixes import PrefixStore
from .prepared import load_prepared

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 8
# When max_new_tokens is lowered to fit the refiner's context, this many tokens stay for the user's
# prompt (a longer prompt is then shortened, see LocalRefiner._fit_input).
_MIN_PROMPT_ROOM = 16
# A shared prefix shorter than this is not worth a cached forward pass of its own.
_MIN_CACHED_PREFIX = 32

# The degenerate-generation guard (see looping_rows): a row is stopped once its last generated tokens
# are one cycle of at most LOOP_MAX_PERIOD tokens repeated, covering at least max(LOOP_MIN_TOKENS,
# LOOP_MIN_REPEATS * period) tokens.
LOOP_MAX_PERIOD = 32
LOOP_MIN_REPEATS = 3
LOOP_MIN_TOKENS = 48
_LOOP_WINDOW = max(LOOP_MIN_TOKENS, LOOP_MIN_REPEATS * LOOP_MAX_PERIOD)  # the tail the check reads
LOOP_NOTE = ("stopped early after {tokens} tokens: the answer kept repeating itself "
             "(the model is likely untrained for this task)")


class _RowSeededSampler(LogitsProcessor):
    """Samples each row with its own seeded generator, so a prompt's sampled refinement does not
    depend on which other prompts share its batch.

    transformers' own sampling draws the whole batch from one global generator, which ties every
    row's randomness to its batch-mates; we deliberately diverge: this processor picks the token and
    leaves only it finite, and greedy decoding (do_sample=False) then takes exactly that token.
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_k: int | None, top_p: float | None):
        self.temperature = temperature
        self.warpers = [w for w in (
            TopKLogitsWarper(top_k) if top_k else None,
            TopPLogitsWarper(top_p) if top_p is not None and top_p < 1.0 else None,
        ) if w is not None]
        self.generators = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = scores.float() / self.temperature
        for warper in self.warpers:
            scores = warper(input_ids, scores)
        probs = torch.softmax(scores, dim=-1).cpu()
        picks = torch.stack([torch.multinomial(p, 1, generator=g) for p, g in zip(probs, self.generators)])
        chosen = torch.full_like(scores, float("-inf"))
        chosen.scatter_(1, picks.to(scores.device), 0.0)
        return chosen


class _ReportTokens(StoppingCriteria):
    """Counts generate's steps and turns them into progress calls (when there is a callback); a raising
    callback cancels generation."""

    def __init__(self, progress, offset: int, total: int):
        self.progress, self.offset, self.total, self.step = progress, offset, total, 0

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        self.step += 1
        if self.progress:
            self.progress(self.offset + self.step, self.total)
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def looping_rows(tail: torch.Tensor, special_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Which rows of `tail` (generated tokens, [batch, n], newest last) end in a degenerate loop.

    The rule: for some period p <= LOOP_MAX_PERIOD, the last max(LOOP_MIN_TOKENS, LOOP_MIN_REPEATS * p)
    tokens each equal the token p before them, i.e. one p-token cycle repeated back to back, at least
    3 times and over at least 48 tokens ("It is a cat. It is a cat. ..." has p of about 6 and is caught
    after 48 tokens, 8 cycles; a 32-token sentence needs 3 copies, 96 tokens). Prose never does that:
    a physics paragraph may repeat a word ("very, very"), a phrase or even a whole sentence twice, but
    not the same token cycle three times running for 48 tokens; repetition with any variation (a
    counted list, "bounces lower, then lower still") is never exactly periodic. The check is exact
    token equality, so it is the same under greedy decoding and sampling.

    `special_ids` (padding, end of sequence) never count as a repeat: rows that already finished are
    padded by generate and must not look like loops. Reads at most _LOOP_WINDOW tokens; a few small
    tensor operations for the whole batch, no host synchronisation.
    """
    rows, n = tail.shape
    flags = torch.zeros(rows, dtype=torch.bool, device=tail.device)
    if n < LOOP_MIN_TOKENS:
        return flags
    tail = tail[:, -_LOOP_WINDOW:]
    n = tail.shape[1]
    periods = torch.arange(1, LOOP_MAX_PERIOD + 1, device=tail.device)
    earlier = torch.arange(n, device=tail.device)[None, :] - periods[:, None]  # [period, position]
    same = tail[:, earlier.clamp(min=0)] == tail[:, None, :]  # each token vs the one p before it
    same &= (earlier >= 0)[None]
    if special_ids is not None and special_ids.numel():
        same &= ~torch.isin(tail, special_ids.to(tail.device))[:, None, :]
    # how many of the newest positions in a row equal the token p before: the periodic stretch is p longer
    run = same.flip(-1).long().cumprod(-1).sum(-1)  # [batch, period]
    needed = torch.clamp(periods * LOOP_MIN_REPEATS, min=LOOP_MIN_TOKENS) - periods
    return (run >= needed[None]).any(-1)


class _RepetitionGuard(StoppingCriteria):
    """Stops each row whose generated tokens loop (see `looping_rows`) and remembers which rows it
    stopped, after how many tokens. Only generated tokens are read, never the prompt."""

    def __init__(self, prompt_length: int, special_ids: Sequence[int]):
        self.prompt_length = prompt_length
        self.special_ids = torch.tensor(sorted(set(special_ids)), dtype=torch.long)
        self.stopped_after: torch.Tensor | None = None  # per row: generated tokens when stopped, or -1

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        if self.stopped_after is None:
            self.stopped_after = torch.full((input_ids.shape[0],), -1, dtype=torch.long, device=input_ids.device)
            self.special_ids = self.special_ids.to(input_ids.device)
        generated = input_ids.shape[1] - self.prompt_length
        if generated < LOOP_MIN_TOKENS:
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        looping = looping_rows(input_ids[:, -min(generated, _LOOP_WINDOW):], self.special_ids)
        first = looping & (self.stopped_after < 0)
        self.stopped_after = torch.where(first, generated, self.stopped_after)
        return looping

    def stops(self, rows: int) -> list[int | None]:
        """Per row, the number of generated tokens it was stopped after, or None."""
        if self.stopped_after is None:
            return [None] * rows
        return [n if n >= 0 else None for n in self.stopped_after.tolist()]


class LocalRefiner:
    """A refiner model and its tokenizer, loaded in this process (a `base.Refiner`).

    The model may be moved between devices by someone else (ComfyUI's model management does); every
    call reads its current device. `release()` drops the weights (to free their memory between runs, and
    the only unload path for quantized models, which cannot be moved); the next call loads them again from
    the spec.
    """

    in_process = True
    info = KindInfo(
        node_id="PhyPromptLoadRefiner",
        display_name="Load Physics Refiner",
        description="Loads an LLM that rewrites prompts with explicit physics: the built-in SmolLM2-135M demo (works "
                    "offline; learned the format, not good physics), or a Hugging Face folder or GGUF file under "
                    "models/LLM, e.g. Qwen2.5-Instruct or a trained PhyPrompt model.",
        search_aliases=("load LLM", "refiner", "Qwen", "GGUF", "SmolLM"),
        source=ModelFiles(
            "model", ("LLM",), suffixes=(GGUF_SUFFIX,), builtins=((BUILTIN_LABEL, BUILTIN_MODEL),),
            help="builtin: SmolLM2-135M with the project's demo adapter, no model-hub download (needs "
                 f"{INSTALL}); a demonstration: it learned the answer format, not good physics. Or a folder "
                 "under models/LLM (or an LLM path in extra_model_paths.yaml) holding config.json, the tokenizer and "
                 "the weights, or a .gguf file (llama.cpp, Ollama; needs pip install gguf). GGUF weights are "
                 "dequantised to float: they take the memory of the full-precision model."),
        options=(
            LoadOption("adapter", None, marker="adapter_config.json", folder_kinds=("LLM",), unset="none",
                       help="Optional PEFT LoRA adapter folder (holds adapter_config.json)."),
            LoadOption("merge_adapter", False, help="Merge the adapter into the weights: faster generation, same output."),
            dtype_option("auto: bf16 (or fp16) on GPU, fp32 on CPU."),
            DEVICE,
            LoadOption("quantization", "none", QUANTIZATIONS,
                       help="4/8-bit weights through bitsandbytes (CUDA only; not for GGUF files); the model is then "
                            "always unloaded after each run."),
            # the command line's: a hub id is downloaded when the hub answers; ComfyUI never downloads
            LoadOption("allow_download", False, help="download a Hugging Face hub id", node=False),
        ),
    )

    def __init__(self, model, tokenizer, spec: LoadSpec | None = None, prefixes: PrefixStore | None = None):
        self._weights = LazyWeights(self._load_again, model)
        self.tokenizer = tokenizer
        self.spec = spec
        self._prefix_caches: dict = {}  # (prefix ids, device, model id) -> KV cache; see _prefix_cache
        self._prefixes = prefixes  # where the prefix caches are also saved, for later processes
        self._instruction_lengths: dict[str, int] = {}  # target name -> tokens before the user's prompt
        self._overheads: dict[str, int] = {}  # target name -> tokens the instruction adds around a prompt
        self.name = (spec.model if spec else getattr(model.config, "_name_or_path", "")) or "refiner"
        if not getattr(tokenizer, "chat_template", None):
            log.warning("%s has no chat template; using the plain System/User/Assistant transcript", self.name)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token

    @classmethod
    def load(cls, model: str, adapter: str | None = None, *, load_on: str | None = None, **options) -> "LocalRefiner":
        """`model`: a model folder, a .gguf file, "builtin" (see `builtin`), or with allow_download a hub id;
        `options` as `LoadSpec` takes them."""
        spec = resolve_builtin(LoadSpec(model=model, adapter=adapter, load_on=load_on, **options))
        if not is_builtin(model):
            return cls(*load_model_and_tokenizer(spec), spec=spec)
        prepared, loaded = load_prepared(spec)
        # the prepared folder keeps the instruction prefixes' caches too (not the sources, if it could not be made)
        refiner = cls(*loaded, spec=prepared, prefixes=PrefixStore(prepared.model) if os.path.isdir(prepared.model)
                      else None)
        refiner.name = BUILTIN_LABEL
        return refiner

    @classmethod
    def resolve(cls, model: str, options: dict) -> tuple[str, dict]:
        """The files `model` stands for: the built-in refiner's GGUF file and adapter (RefinerLoadError when its
        package is not installed, or when another adapter is given); any other model as it is."""
        spec = resolve_builtin(LoadSpec(model=model, adapter=options.get("adapter")))
        return spec.model, (options | {"adapter": spec.adapter} if spec.adapter else options)

    @property
    def model(self):
        return self._weights()

    @property
    def loaded(self) -> bool:
        return self._weights.loaded

    def modules(self) -> dict[str, torch.nn.Module] | None:
        """The model, for a host to move; None for quantized (bitsandbytes) weights, which cannot be moved."""
        return None if self.spec is not None and self.spec.quantization != "none" else {"refiner": self.model}

    def release(self) -> None:
        self._prefix_caches.clear()
        self._weights.release()

    def _load_again(self):
        if self.spec is None:
            raise RuntimeError("this refiner was released and has no spec to load it again")
        return load_model_and_tokenizer(self.spec)[0]

    @property
    def context_length(self) -> int:
        config = self.model.config
        get_text_config = getattr(config, "get_text_config", None)
        config = get_text_config() if get_text_config else config
        return int(getattr(config, "max_position_embeddings", None) or 4096)

    def render(self, prompt: str, target: Target) -> str:
        return render_prompt(self.tokenizer, build_messages(prompt, target))

    def _tokens(self, prompt: str, target: Target) -> list[int]:
        """The ids of `prompt` inside the instruction for `target`: the model's whole input."""
        return self.tokenizer(self.render(prompt, target), add_special_tokens=False)["input_ids"]

    def _overhead(self, target: Target) -> int:
        """Tokens the instruction for `target` adds around a prompt (the same for every prompt: kept)."""
        if target.name not in self._overheads:
            self._overheads[target.name] = len(self._tokens(".", target)) - 1
        return self._overheads[target.name]

    def _fit_input(self, prompt: str, target: Target, max_new_tokens: int) -> tuple[list[int], tuple[str, ...]]:
        """The model's input ids for the user's prompt, rendered and tokenised once; the prompt is shortened
        first if the instruction around it would not fit the context."""
        room = self.context_length - max_new_tokens
        ids = self._tokens(prompt, target)
        if len(ids) <= room:
            return ids, ()
        fitted = fit_to_budget(prompt, TokenizerCounter(self.tokenizer), room - self._overhead(target))
        if not fitted.text:
            raise ValueError(
                f"max_new_tokens={max_new_tokens} leaves no room for the prompt in this refiner's "
                f"{self.context_length}-token context; lower max_new_tokens"
            )
        return (self._tokens(fitted.text, target),
                (f"the input prompt was shortened to {fitted.tokens} tokens to fit the refiner",))

    def refine(
        self,
        prompts: str | Sequence[str],
        target: str | Target = "generic",
        *,
        seed: int = 0,
        temperature: float = 0.0,
        top_p: float | None = None,
        top_k: int | None = None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        target_tokenizer=None,
        progress: OptionalProgress = None,
    ) -> list[Refinement]:
        """Refine one or more prompts for `target`.

        temperature 0 decodes greedily; above 0 it samples, prompt i of the request with seed
        `seed + i`, so the same seed and inputs give the same outputs whatever the batch size.
        top_k/top_p default to the model's own generation config. `target_tokenizer` (a tokenizer,
        a tokenizer folder, or a TokenCounter) counts the budget exactly; without it it is estimated.
        `progress(done, total)` is called after every generation step (a token of each prompt of a batch)
        and may raise to cancel; `total` is the steps taken plus the most that may follow (max_new_tokens a
        batch), and shrinks when a batch ends early, so the last call is (steps taken, steps taken).
        """
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        target = get_target(target) if isinstance(target, str) else target
        if not prompts:
            return []
        check_request(prompts, temperature, max_new_tokens)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")

        notes: tuple[str, ...] = ()
        room = self.context_length - _MIN_PROMPT_ROOM - self._overhead(target) - 1
        if max_new_tokens > room:
            notes = (f"max_new_tokens lowered from {max_new_tokens} to {room}, the refiner's context",)
            max_new_tokens = room
        counter = counter_for(target, target_tokenizer)
        batches = [range(start, min(start + batch_size, len(prompts))) for start in range(0, len(prompts), batch_size)]
        results: list[Refinement] = []
        done = 0  # generation steps taken; the total is those plus the most the batches left may take
        for number, rows in enumerate(batches):
            fitted = [self._fit_input(prompts[i], target, max_new_tokens) for i in rows]
            reporter = _ReportTokens(progress, done, done + (len(batches) - number) * max_new_tokens)
            answers = self._generate(
                [ids for ids, _ in fitted], target, [(seed + i) % 2**64 for i in rows], temperature, top_p, top_k,
                max_new_tokens, reporter,
            )
            for i, (answer, loop_notes), (_, input_notes) in zip(rows, answers, fitted):
                results.append(Refinement.from_answer(prompts[i], answer, target, counter,
                                                      notes + input_notes + loop_notes))
            done += reporter.step
            if progress:  # an answer that ended early takes its unused steps off the total: no jump forward
                progress(done, done + (len(batches) - number - 1) * max_new_tokens)
        return results

    @torch.inference_mode()
    def _generate(self, rows, target, seeds, temperature, top_p, top_k, max_new_tokens,
                  reporter) -> list[tuple[str, tuple[str, ...]]]:
        """Each input's answer (`rows`: input ids), and notes about its generation (a row stopped for looping)."""
        model, tokenizer = self.model, self.tokenizer
        device = next(model.parameters()).device
        input_ids, attention_mask, past = self._batch_with_cached_prefix(rows, target, device)
        config = model.generation_config
        processors = []
        if temperature > 0:
            processors.append(_RowSeededSampler(
                seeds, temperature,
                top_k if top_k is not None else getattr(config, "top_k", None),
                top_p if top_p is not None else getattr(config, "top_p", None),
            ))
        guard = _RepetitionGuard(input_ids.shape[1], _special_ids(tokenizer, config))
        torch.manual_seed(seeds[0])
        output = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            **({_cache_argument(model): past} if past is not None else {}),
            **_greedy_overrides(),
            max_new_tokens=max_new_tokens,
            logits_processor=processors,
            stopping_criteria=[reporter, guard],
            stop_strings=[PROMPT_CLOSE],
            tokenizer=tokenizer,
            pad_token_id=tokenizer.pad_token_id,
        )
        new_tokens = output[:, input_ids.shape[1]:]
        stops = guard.stops(len(rows))
        # a stopped row is padded by generate; cut it where it stopped anyway, in case nothing padded it
        answers = [row[:stop] if stop is not None else row for row, stop in zip(new_tokens, stops)]
        texts = tokenizer.batch_decode(answers, skip_special_tokens=True)
        return [(ASSISTANT_PREFIX + text, (LOOP_NOTE.format(tokens=stop),) if stop is not None else ())
                for text, stop in zip(texts, stops)]

    def _batch_with_cached_prefix(self, rows: list[list[int]], target: Target, device):
        """Input ids laid out as [instruction prefix][padding][each prompt's own tokens], their
        attention mask, and a copy of the instruction prefix's KV cache for the batch.

        Every refinement for a target starts with the same few hundred tokens (template, system
        message, target description), which would otherwise be recomputed for every prompt: their
        keys and values are computed once and kept for later calls. The padding sits after the
        prefix instead of on the far left; the attention mask hides it and generate() derives
        positions from the mask, so the result is the same as plain left padding.
        """
        pad = self.tokenizer.pad_token_id
        # generate() needs at least one uncached token in every row
        shared = min(_common_prefix_length(rows), self._instruction_length(target),
                     min(len(row) for row in rows) - 1)
        width = max(len(row) for row in rows)
        ids, mask = [], []
        for row in rows:
            gap = width - len(row)
            ids.append(row[:shared] + [pad] * gap + row[shared:])
            mask.append([1] * shared + [0] * gap + [1] * (len(row) - shared))
        input_ids = torch.tensor(ids, device=device)
        attention_mask = torch.tensor(mask, device=device)
        if shared < _MIN_CACHED_PREFIX:
            return input_ids, attention_mask, None
        past = copy.deepcopy(self._prefix_cache(tuple(rows[0][:shared]), device))
        past.batch_repeat_interleave(len(rows))
        return input_ids, attention_mask, past

    def _instruction_length(self, target: Target) -> int:
        """Tokens every rendering for `target` shares: everything before the user's prompt."""
        if target.name not in self._instruction_lengths:
            probes = [self._tokens(text, target) for text in ("A", "Z")]
            self._instruction_lengths[target.name] = _common_prefix_length(probes)
        return self._instruction_lengths[target.name]

    def _prefix_cache(self, prefix: tuple[int, ...], device):
        key = (prefix, str(device), id(self.model))
        if key not in self._prefix_caches:
            from transformers import DynamicCache

            if len(self._prefix_caches) >= len(TARGETS):  # one per target is all a session needs
                self._prefix_caches.clear()
            cache = self._prefixes.load(prefix, self.model, device) if self._prefixes else None
            if cache is None:
                cache = DynamicCache(config=self.model.config)
                self.model(input_ids=torch.tensor([prefix], device=device), use_cache=True,
                           **{_cache_argument(self.model): cache})
                if self._prefixes:
                    self._prefixes.save(prefix, cache, self.model, device)
            self._prefix_caches[key] = cache
        return self._prefix_caches[key]


def _cache_argument(model) -> str:
    """Recent transformers renamed `past_key_values` to `cache`; use whichever this version takes."""
    forward = model.get_base_model().forward if hasattr(model, "get_base_model") else model.forward
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


def _special_ids(tokenizer, config) -> list[int]:
    """Padding and end-of-sequence ids: what generate writes into finished rows."""
    ids = [tokenizer.pad_token_id, tokenizer.eos_token_id]
    for value in (getattr(config, "eos_token_id", None), getattr(config, "pad_token_id", None)):
        ids.extend(value if isinstance(value, (list, tuple)) else [value])
    return [int(i) for i in ids if i is not None]


def _common_prefix_length(rows: list[list[int]]) -> int:
    shortest = min(len(row) for row in rows)
    for i in range(shortest):
        token = rows[0][i]
        if any(row[i] != token for row in rows):
            return i
    return shortest


def _greedy_overrides() -> dict:
    """Generation settings that make generate() greedy whatever the model's generation config says;
    sampling, when asked for, happens in _RowSeededSampler."""
    return dict(do_sample=False, temperature=None, top_p=None, top_k=None, num_beams=1)
