"""The API refiner: a model on an OpenAI-compatible server (Ollama, LM Studio, llama.cpp's server, vLLM,
OpenAI), asked with the project's instruction and read by the project's parser, like the local one."""

from __future__ import annotations

from typing import Sequence

from ..infra.endpoint import DEFAULT_API_KEY_ENV, DEFAULT_MAX_CONCURRENCY, DEFAULT_RETRIES, DEFAULT_TIMEOUT, ChatClient
from ..infra.progress import OptionalProgress
from ..language.budget import counter_for
from ..language.instruction import build_messages
from ..language.targets import Target, get_target
from .base import DEFAULT_MAX_NEW_TOKENS, Refinement, check_request


class APIRefiner:
    """A refiner on a server (a `base.Refiner`). Its weights live in the server's process, so
    nothing here can be moved or offloaded; Ollama's `keep_alive` decides how long the server keeps
    the model in its memory after a call.

    The server writes the whole answer, `<think>` included (the local refiner writes that opening
    itself and the parser reads both the same way). A server that fails raises `EndpointError`; an
    answer that breaks the output contract is not an error: its Refinement keeps the original prompt.
    """

    in_process = False

    def __init__(self, client: ChatClient):
        self.client = client
        self.name = client.model

    @classmethod
    def load(cls, url: str, model: str, *, api_key_env: str = DEFAULT_API_KEY_ENV, timeout: float = DEFAULT_TIMEOUT,
             retries: int = DEFAULT_RETRIES, keep_alive: str | int | None = None,
             max_concurrency: int = DEFAULT_MAX_CONCURRENCY) -> "APIRefiner":
        """Checks the settings; the server is first contacted by `refine` (see `endpoint.ChatClient`)."""
        return cls(ChatClient(url, model, api_key_env=api_key_env, timeout=timeout, retries=retries,
                              keep_alive=keep_alive, max_concurrency=max_concurrency))

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
        """See `base.Refiner.refine`. Up to `max_concurrency` prompts are asked at once, prompt i with
        seed + i (whether a server samples deterministically is up to the server); `progress` counts
        prompts answered and is also called while waiting, so raising from it cancels promptly."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        target = get_target(target) if isinstance(target, str) else target
        if not prompts:
            return []
        check_request(prompts, temperature, max_new_tokens)
        counter = counter_for(target, target_tokenizer)
        answers = self.client.complete(
            [build_messages(prompt, target) for prompt in prompts], seeds=[seed + i for i in range(len(prompts))],
            temperature=temperature, max_tokens=max_new_tokens, progress=progress,
        )
        return [Refinement.from_answer(prompt, answer, target, counter) for prompt, answer in zip(prompts, answers)]

    def modules(self) -> None:
        """None: the weights live on the server."""

    def release(self) -> None:
        """Nothing to free: each request opens and closes its own connection, and the server's memory
        is governed by keep_alive."""
