"""`physics_judge`: how explicitly a rewrite states the physics of its scene, as a chat LLM rates it. It is
the judged alternative to the `physics` keyword proxy, with no video rendered.

`physics_judge` in the recipe is a local chat-model folder (or .gguf), loaded as the refiner loads one, on
this rank's device; or the URL of an OpenAI-compatible server, with `physics_judge_model` naming the model
there and the key read from the environment variable named by `physics_judge_api_key_env`. Each rewrite is
one question (QUESTION), answered greedily, and read as the chat video judges read theirs
(`phyprompt.judges.chat`): the expected value over "1".."5" where token probabilities are at hand, else the
parsed integer; then scaled from 1..5 to 0..1. An answer with no score gets the minimum, and so does every
rewrite of a batch whose request fails (after the client's retries); both with a logged warning, and
training goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from phyprompt.infra.console import first_line
from phyprompt.infra.endpoint import ChatClient, ServerSpec, is_server
from phyprompt.judges.chat import generated_answer, reply_answer, single_token_ids
from phyprompt.judges.scores import SCALE_VALUES, parse_score
from phyprompt.refiners import RefinerSpec

from .options import MINIMUM, RewardArguments, rank_device, unit_score
from .text import Reward, _parsed

log = logging.getLogger(__name__)

QUESTION = (
    "Here is a prompt for a text-to-video model:\n\n{prompt}\n\n"
    "How explicitly and correctly does it describe the physics of what happens: the forces and motion, the "
    "contacts and collisions, the materials and how they bend, flow, melt or break? Rate it from 1 (no physical "
    "detail) to 5 (specific, physically correct detail that a video could show). Answer with the number only."
)
#: room for "4" or "Rating: 4"; the parser reads the first number
MAX_ANSWER_TOKENS = 8
#: top tokens asked of a server per answer position; five already hold "1".."5"
TOP_LOGPROBS = 10


def conversation(prompt: str) -> list[dict]:
    return [{"role": "user", "content": QUESTION.format(prompt=prompt)}]


class LocalPromptJudge:
    """A chat model in this process, opened as the local refiner opens one: its model and tokenizer."""

    def __init__(self, spec: RefinerSpec):
        refiner = spec.open()
        self.model, self.tokenizer = refiner.model, refiner.tokenizer
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"physics_judge {spec.source} has no chat template: give an instruction-tuned chat "
                             "model")
        self.tokenizer.padding_side = "left"  # generation continues every row from its last token
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.answer_ids = single_token_ids(self.tokenizer, SCALE_VALUES)

    def answers(self, prompts: Sequence[str]) -> list[tuple[str, float | None]]:
        import torch

        tokenizer = self.tokenizer
        texts = [tokenizer.apply_chat_template(conversation(p), add_generation_prompt=True, tokenize=False)
                 for p in prompts]
        # the template writes any BOS itself, as the refiner's prompts do
        inputs = tokenizer(texts, padding=True, add_special_tokens=False, return_tensors="pt").to(self.model.device)
        with torch.inference_mode():
            output = self.model.generate(
                **inputs, max_new_tokens=MAX_ANSWER_TOKENS, output_logits=True, return_dict_in_generate=True,
                pad_token_id=tokenizer.pad_token_id,
                do_sample=False, temperature=None, top_p=None, top_k=None, num_beams=1, repetition_penalty=1.0)
        tokens = output.sequences[:, inputs["input_ids"].shape[1]:].cpu()
        return [generated_answer(tokenizer, tokens, output.logits, row, self.answer_ids, SCALE_VALUES)
                for row in range(len(prompts))]


class ServerPromptJudge:
    """A chat model on an OpenAI-compatible server, through the project's one HTTP client."""

    def __init__(self, server: ServerSpec, logprobs: bool):
        self.client, self.logprobs = ChatClient(server), logprobs

    def answers(self, prompts: Sequence[str]) -> list[tuple[str, float | None]]:
        replies = self.client.replies([conversation(p) for p in prompts], temperature=0.0,
                                      max_tokens=MAX_ANSWER_TOKENS,
                                      top_logprobs=TOP_LOGPROBS if self.logprobs else None)
        return [reply_answer(reply, SCALE_VALUES) for reply in replies]


def open_prompt_judge(options: RewardArguments):
    """The recipe's physics_judge, read here once: a server address, or a chat-model folder (or .gguf) on this
    rank's device."""
    where = options.physics_judge
    if not where:
        raise ValueError("the physics_judge reward needs physics_judge: a chat-model folder or a server URL")
    if is_server(where):
        if not options.physics_judge_model:
            raise ValueError("physics_judge is a server: set physics_judge_model to the model name it serves")
        return ServerPromptJudge(ServerSpec(where, options.physics_judge_model,
                                            api_key_env=options.physics_judge_api_key_env),
                                 options.physics_judge_logprobs)
    return LocalPromptJudge(RefinerSpec.build("local", where, device=rank_device()))


def physics_judge_reward(options: RewardArguments) -> Reward:
    judge = open_prompt_judge(options)

    def reward(prompts, completions, **_columns) -> list[float]:
        refined = _parsed(completions)
        kept = [i for i, p in enumerate(refined) if p is not None]
        scores = [MINIMUM] * len(completions)
        if not kept:
            return scores
        try:
            answers = judge.answers([refined[i] for i in kept])
        except Exception as error:  # a judge that fails must not stop training
            log.warning("physics_judge: %s; the %d rewrites of this batch get the minimum reward",
                        first_line(error), len(kept))
            return scores
        for i, (text, expected) in zip(kept, answers):
            value = expected if expected is not None else parse_score(text)
            if value < 1:  # parse_score's 0: no rating in the answer
                log.warning("physics_judge gave no score (%r) for %r; it gets the minimum reward", text[:40],
                            refined[i][:80])
                continue
            scores[i] = unit_score(value)
        return scores
    return reward
