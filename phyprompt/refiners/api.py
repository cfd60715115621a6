"""The API refiner: a model on an OpenAI-compatible server (Ollama, LM Studio, llama.cpp's server, vLLM,
OpenAI), asked with the project's instruction and read by the project's parser, like the local one."""

from __future__ import annotations

from typing import Sequence

from ..infra.endpoint import DEFAULT_MAX_CONCURRENCY, ChatClient, ServerSpec, parse_keep_alive
from ..infra.kinds import KindInfo, LoadOption, Server, server_options
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
    info = KindInfo(
        node_id="PhyPromptLoadAPIRefiner",
        display_name="Physics Refiner (API)",
        description="Refines on an OpenAI-compatible server (Ollama, LM Studio, llama.cpp server, vLLM, OpenAI) "
                    "instead of loading an LLM into ComfyUI. The model lives in the server's memory, which ComfyUI "
                    "does not manage: keep_alive is applied through Ollama's native API after the prompts are "
                    "written, and 0 frees it then, so the video model gets the VRAM.",
        search_aliases=("API", "Ollama", "OpenAI", "LM Studio", "vLLM", "llama.cpp"),
        source=Server("http://127.0.0.1:11434/v1",
                      help="The server's API base (Ollama: http://127.0.0.1:11434/v1, LM Studio: "
                           "http://127.0.0.1:1234/v1, llama.cpp: http://127.0.0.1:8080/v1) or its full "
                           "/chat/completions address."),
        options=(
            *server_options(
                "qwen2.5:7b", model_help="The model name the server knows (Ollama: as in `ollama list`).",
                api_key_help="The NAME of the environment variable that holds the API key, set before ComfyUI "
                             "starts; not set: no key is sent (local servers need none). The key itself never goes "
                             "in a widget: widgets are saved in every workflow and PNG.",
                timeout_help="Seconds to wait for one answer (a model loading on the server counts too); "
                             "timeouts, 429 and 5xx answers are retried a few times."),
            LoadOption("keep_alive", "0", check=parse_keep_alive,
                       help="Ollama only: how long the server keeps the model in memory, applied through Ollama's "
                            "native API after the prompts are written. 0 frees it then for the video model, -1 "
                            "keeps it loaded, 5m keeps it five minutes. Empty: not sent (other servers)."),
            LoadOption("max_concurrency", DEFAULT_MAX_CONCURRENCY, minimum=1, maximum=64,
                       help="How many prompts of a list are sent at once."),
        ),
    )

    def __init__(self, client: ChatClient):
        self.client = client
        self.name = client.model

    @classmethod
    def load(cls, server: ServerSpec) -> "APIRefiner":
        """The server is first contacted by `refine` (see `endpoint.ChatClient`)."""
        return cls(ChatClient(server))

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
