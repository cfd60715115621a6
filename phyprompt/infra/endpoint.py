"""The one HTTP client for OpenAI-compatible chat-completions servers: Ollama, LM Studio, llama.cpp's
server, vLLM, OpenAI, and what it is opened from: `ServerSpec` (address, model, the NAME of the key's
variable, timeout, keep_alive…), checked when it is made, and `is_server`, the one reading of a user's string
as a server address. Standard library only.

Requests run on daemon worker threads, at most `max_concurrency` at a time. The caller's thread only
waits, waking every `POLL_INTERVAL` seconds to call its progress callback: a callback that raises (a
cancel) ends the wait at once, and the requests still in flight are abandoned to finish on their own,
so a cancel never waits for a slow server. Transient failures (429, 5xx, timeouts, dropped
connections) are retried with exponential back-off; everything else is one `EndpointError` line that
says what to change. The API key is read from an environment variable at each request, by name, and
never appears in a message.

Ollama's `keep_alive` is not a chat-completions field (its OpenAI-compatible endpoint ignores it), so it
is never put in a chat request: when set, it is sent once per `complete()` call through Ollama's native
API, `POST <server root>/api/generate` with `{"model", "keep_alive"}` and no prompt, after the answers
have arrived. A failure there is only a logged warning: the answers are already in.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import os
import queue
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from .progress import OptionalProgress

log = logging.getLogger(__name__)

DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
DEFAULT_TIMEOUT = 120.0
DEFAULT_RETRIES = 3
DEFAULT_MAX_CONCURRENCY = 4
# How often a waiting caller runs its progress callback, which is how a cancel reaches it.
POLL_INTERVAL = 0.2
_MAX_WAIT = 120.0  # the longest back-off, even when the server's Retry-After asks for more
# Seeds are sent modulo 2**31: llama.cpp reads a 32-bit seed, vLLM a signed 64-bit one, and a larger
# number makes the request fail instead of sampling.
_SEED_RANGE = 2**31
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# Ollama's keep_alive: seconds as a number, or a Go duration such as "5m" or "1h30m".
_SECONDS = re.compile(r"[+-]?\d+")
_DURATION = re.compile(r"-?(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+")
_TRANSIENT_CODES = {408, 429, 500, 502, 503, 504}
_CHAT_PATH = "/chat/completions"


class EndpointError(ValueError):
    """The server could not be used; the message is one line that says what to change."""


def chat_completions_url(url: str) -> str:
    """The chat-completions address for an API base (`http://127.0.0.1:11434/v1`) or the full address."""
    address = url.strip().rstrip("/")
    parts = urllib.parse.urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise EndpointError(f"the endpoint must be an http(s) address such as http://127.0.0.1:11434/v1, not {url!r}")
    return address if address.endswith(_CHAT_PATH) else address + _CHAT_PATH


def server_root(url: str) -> str:
    """The server's own address, where Ollama's native API lives: the API base without its `/v1`
    (`http://127.0.0.1:11434/v1` and `.../v1/chat/completions` both give `http://127.0.0.1:11434`)."""
    address = chat_completions_url(url)[:-len(_CHAT_PATH)]
    return address[:-len("/v1")] if address.endswith("/v1") else address


def check_env_name(name: str) -> str:
    """The name of the variable that holds the key. The value is not echoed back: a key pasted here by
    mistake must not end up in a log."""
    if not _ENV_NAME.fullmatch(name or ""):
        raise EndpointError("api_key_env must be the NAME of an environment variable (such as OPENAI_API_KEY), "
                            "never the key itself")
    return name


def parse_keep_alive(value: str | int | None) -> str | int | None:
    """Ollama's keep_alive as sent: None (or "") sends nothing, whole seconds become a number
    (0 unloads the model at once, -1 keeps it loaded; Ollama reads "-1" as a string as an error), and a
    duration such as "5m" stays a string."""
    if value is None or isinstance(value, int):
        return value
    text = str(value).strip()
    if not text:
        return None
    if _SECONDS.fullmatch(text):
        return int(text)
    if _DURATION.fullmatch(text):
        return text
    raise EndpointError(f"keep_alive must be seconds (0 unloads the model at once, -1 keeps it) or a duration "
                        f"such as 5m or 1h, not {text!r}")


def is_server(text: str) -> bool:
    """Whether a user's string names a server (an http(s) address) rather than something on disk. Every
    spec that takes either reads the string with this, once, where it is typed; nothing below asks again."""
    return text.strip().lower().startswith(("http://", "https://"))


def check_model_name(name: str) -> str:
    """The name of the model a server serves, stripped; an empty one says what to give."""
    if not name or not name.strip():
        raise EndpointError("model is empty: give the model name the server knows, e.g. qwen2.5:7b on Ollama")
    return name.strip()


@dataclass(frozen=True)
class ServerSpec:
    """A model on an OpenAI-compatible server, checked when it is made (an `EndpointError` says what to change).

    `url` is an API base or the full `.../chat/completions` address; `model` the server's model name;
    `api_key_env` the NAME of the environment variable holding the key (read at each request; not set: no
    Authorization header); `timeout` how long one request may wait for its answer; `retries` how often a
    transient failure is tried again; `keep_alive` Ollama's (see `parse_keep_alive`; None for other servers);
    `max_concurrency` how many requests are in flight at once."""

    url: str
    model: str
    api_key_env: str = DEFAULT_API_KEY_ENV
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    keep_alive: str | int | None = None
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY

    def __post_init__(self):
        chat_completions_url(self.url)
        if not self.timeout > 0:
            raise EndpointError(f"timeout must be more than 0 seconds, not {self.timeout}")
        if self.retries < 0:
            raise EndpointError(f"retries must be 0 or more, not {self.retries}")
        if self.max_concurrency < 1:
            raise EndpointError(f"max_concurrency must be at least 1, not {self.max_concurrency}")
        for name, value in (("url", self.url.strip()), ("model", check_model_name(self.model)),
                            ("api_key_env", check_env_name(self.api_key_env)), ("timeout", float(self.timeout)),
                            ("keep_alive", parse_keep_alive(self.keep_alive))):
            object.__setattr__(self, name, value)

    def identity(self) -> dict:
        """The weights behind it, as far as a client can name them: the address and the model name (a server
        that swaps the weights behind a name must be given a new name)."""
        return {"url": chat_completions_url(self.url), "model": self.model}

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Reply:
    """One answer: its text and, when they were asked for and the server sent them, the most likely tokens
    at each position of it."""

    text: str
    #: per answer token, {token text: log-probability} of the server's top tokens there; None when the
    #: server sent none (not every server can: Ollama before 0.12, some hosted models)
    top_logprobs: list[dict[str, float]] | None = None


class _Transient(Exception):
    """A failure worth retrying (its message says what to do if retrying does not help); `wait` is the
    server's Retry-After, when it gave one."""

    def __init__(self, what: str, wait: float | None = None):
        super().__init__(what)
        self.wait = wait


class _Abandoned(Exception):
    """The caller stopped waiting; a worker drops what it was doing."""


class ChatClient:
    """Chat completions from the model a `ServerSpec` names.

    A transient failure is tried again `server.retries` times, after `backoff` seconds, doubling each time (or
    what the server's Retry-After asks). `keep_alive`, when set, ends each `complete()` call by being sent to
    `<server root>/api/generate` (see `_send_keep_alive`), which only Ollama has.
    """

    backoff = 1.0  # seconds before the first retry

    def __init__(self, server: ServerSpec):
        self.server = server
        self.url = chat_completions_url(server.url)
        self.keep_alive_url = server_root(server.url) + "/api/generate"
        self.model, self.api_key_env, self.keep_alive = server.model, server.api_key_env, server.keep_alive
        self.timeout, self.retries, self.max_concurrency = server.timeout, server.retries, server.max_concurrency

    def complete(self, conversations: Sequence[list[dict]], *, seeds: Sequence[int] | None = None,
                 temperature: float | None = None, max_tokens: int | None = None,
                 progress: OptionalProgress = None) -> list[str]:
        """The assistant's text for each conversation, in order (see `replies`)."""
        return [reply.text for reply in self.replies(conversations, seeds=seeds, temperature=temperature,
                                                     max_tokens=max_tokens, progress=progress)]

    def replies(self, conversations: Sequence[list[dict]], *, seeds: Sequence[int] | None = None,
                temperature: float | None = None, max_tokens: int | None = None, top_logprobs: int | None = None,
                progress: OptionalProgress = None) -> list[Reply]:
        """The assistant's answer to each conversation (a list of chat messages, whose content may be text
        or a list of text and image parts), in order.

        Conversation i is sent with seed `seeds[i]`. With `top_logprobs`, the server is asked for that many
        most likely tokens at each answer position (OpenAI's `logprobs`/`top_logprobs`). `progress(done,
        total)` counts answers, and is also called every POLL_INTERVAL while waiting: when it raises, this
        returns at once with its exception, abandoning the requests in flight. The first failure ends the
        call the same way.

        keep_alive, when set, is sent once all the answers have arrived, before this returns. On a cancel
        it is sent too, from a background thread so the cancel does not wait (Ollama applies it once the
        abandoned requests end): with 0, a cancelled run still frees the server's memory. After a
        failure it is not sent: the server has just failed, and the error says what to fix.
        """
        total = len(conversations)
        if total == 0:
            return []
        todo: queue.Queue = queue.Queue()
        for index in range(total):
            todo.put(index)
        finished: queue.Queue = queue.Queue()
        stop = threading.Event()

        def work() -> None:
            while not stop.is_set():
                try:
                    index = todo.get_nowait()
                except queue.Empty:
                    return
                body = self._body(conversations[index], None if seeds is None else seeds[index], temperature,
                                  max_tokens, top_logprobs)
                try:
                    finished.put((index, self._ask(body, stop)))
                except _Abandoned:
                    return
                except Exception as exc:  # handed to the caller's thread, which raises it
                    finished.put((index, exc))
                    return

        for _ in range(min(self.max_concurrency, total)):
            threading.Thread(target=work, name="phyprompt-endpoint", daemon=True).start()
        answers: list[Reply | None] = [None] * total
        done = 0

        def report() -> None:
            if not progress:
                return
            try:
                progress(done, total)
            except BaseException:  # a cancel
                if self.keep_alive is not None:
                    threading.Thread(target=self._send_keep_alive, name="phyprompt-keep-alive", daemon=True).start()
                raise

        try:
            while done < total:
                try:
                    index, answer = finished.get(timeout=POLL_INTERVAL)
                except queue.Empty:
                    report()
                    continue
                if isinstance(answer, Exception):
                    raise answer
                answers[index] = answer
                done += 1
                report()
        finally:
            stop.set()  # on a failure or a cancel, workers start nothing new
        if self.keep_alive is not None:
            self._send_keep_alive()
        return answers

    def _body(self, messages: list[dict], seed: int | None, temperature: float | None,
              max_tokens: int | None, top_logprobs: int | None) -> dict:
        body = {"model": self.model, "messages": messages, "stream": False}
        if seed is not None:
            body["seed"] = seed % _SEED_RANGE
        if temperature is not None:
            body["temperature"] = temperature
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if top_logprobs is not None:
            body["logprobs"], body["top_logprobs"] = True, top_logprobs
        return body

    def _ask(self, body: dict, stop: threading.Event) -> Reply:
        """One conversation's answer, retrying transient failures."""
        for attempt in range(self.retries + 1):
            try:
                return _reply(self._chat(body), self.url)
            except _Transient as failure:
                if attempt == self.retries:
                    raise EndpointError(f"gave up on {self.url} after {attempt + 1} tries: {failure}") from None
                wait = failure.wait if failure.wait is not None else self.backoff * 2**attempt
                if stop.wait(min(wait, _MAX_WAIT)):
                    raise _Abandoned
        raise AssertionError("unreachable")

    def _chat(self, body: dict) -> dict:
        """One chat-completions request's reply; a failure is an EndpointError, or _Transient when worth
        retrying."""
        try:
            data = self._post(self.url, body)
        except urllib.error.HTTPError as error:
            raise self._http_error(error) from None
        except urllib.error.URLError as error:
            raise self._connection_error(error.reason) from None
        except (OSError, http.client.HTTPException) as error:  # while waiting for or reading the answer
            raise self._connection_error(error) from None
        try:
            return json.loads(data)
        except ValueError:
            raise EndpointError(f"{self.url} sent a reply that is not JSON; is it an OpenAI-compatible "
                                "chat-completions address?") from None

    def _send_keep_alive(self) -> None:
        """Ollama's native `{"model", "keep_alive"}` request (no prompt: it only loads or unloads the model
        and sets how long it stays; 0 unloads it at once). Tried once; a failure is a logged warning, never
        an error: the prompts are written by then."""
        url = self.keep_alive_url
        try:
            self._post(url, {"model": self.model, "keep_alive": self.keep_alive})
        except urllib.error.HTTPError as error:
            # the server's own text is left out of 401 and 403: some quote part of the key they refused
            detail = "" if error.code in (401, 403) else _server_message(error)
            log.warning("keep_alive is Ollama's: %s answered HTTP %s%s; leave keep_alive empty for other servers",
                        url, error.code, f" ({detail})" if detail else "")
        except (OSError, http.client.HTTPException, ValueError) as error:
            reason = error.reason if isinstance(error, urllib.error.URLError) else error
            why = _one_line(getattr(reason, "strerror", None) or reason) or type(reason).__name__
            log.warning("keep_alive was not applied: could not reach %s (%s); leave keep_alive empty for servers "
                        "other than Ollama", url, why)

    def _post(self, url: str, body: dict) -> bytes:
        """The one way this client sends: `body` as JSON to `url`, with its headers, key and timeout; the
        reply's bytes. Failures are urllib's and http.client's own exceptions, for the caller to read."""
        headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "phyprompt"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return response.read()

    def _connection_error(self, reason) -> Exception:
        if isinstance(reason, TimeoutError):
            return _Transient(f"no answer within {self.timeout:g} s: raise the timeout, or check the server")
        if isinstance(reason, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError,
                               http.client.HTTPException)):
            return _Transient(f"the connection was dropped ({type(reason).__name__}): check the server")
        where = urllib.parse.urlsplit(self.url).netloc
        return EndpointError(f"cannot reach {self.url} ({_one_line(getattr(reason, 'strerror', None) or reason)}): "
                             f"is the server running at {where}?")

    def _http_error(self, error: urllib.error.HTTPError) -> Exception:
        code = error.code
        if code in (401, 403):
            # the server's own text is left out: some quote part of the key they refused
            fix = (f"the key in ${self.api_key_env} was not accepted" if os.environ.get(self.api_key_env)
                   else f"set ${self.api_key_env} to the server's API key")
            return EndpointError(f"{self.url} answered HTTP {code} (not authorized): {fix}")
        detail = _server_message(error)
        if code in _TRANSIENT_CODES:
            what = f"HTTP {code} ({detail})" if detail else f"HTTP {code}"
            return _Transient(f"{what}: the server is busy or failing, try again later", _retry_after(error.headers))
        if code == 404:
            return EndpointError(f"{self.url} answered HTTP 404{f' ({detail})' if detail else ''}: check the address "
                                 f"(an API base such as http://127.0.0.1:11434/v1) and the model name {self.model!r}")
        return EndpointError(f"{self.url} rejected the request (HTTP {code}{f': {detail}' if detail else ''})")


def _reply(reply, url: str) -> Reply:
    """choices[0].message.content, a null content (the model wrote nothing) being an empty answer, with
    choices[0].logprobs.content[i].top_logprobs when the server sent them."""
    try:
        choice = reply["choices"][0]
        content = choice["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise EndpointError(f"{url} sent no choices[0].message.content; is it an OpenAI-compatible "
                            "chat-completions address?") from None
    if content is not None and not isinstance(content, str):
        raise EndpointError(f"{url} sent a choices[0].message.content that is not text")
    return Reply(content or "", _top_logprobs(choice.get("logprobs")))


def _top_logprobs(logprobs) -> list[dict[str, float]] | None:
    """OpenAI's {"content": [{"token", "logprob", "top_logprobs": [{"token", "logprob"}, …]}, …]} as one
    {token: log-probability} per position; None when missing or in another shape (log-probabilities are
    an extra that some servers lack, never a reason to fail the answer)."""
    try:
        return [{top["token"]: float(top["logprob"]) for top in position["top_logprobs"]}
                for position in logprobs["content"]]
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def _server_message(error: urllib.error.HTTPError) -> str:
    """The server's own explanation, on one short line ({"error": {"message": …}}, {"error": …} or text)."""
    try:
        text = error.read(4096).decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        return ""
    try:
        data = json.loads(text)
        found = data.get("error", data.get("detail", data.get("message", text))) if isinstance(data, dict) else text
        if isinstance(found, dict):
            found = found.get("message", found)
        text = str(found)
    except ValueError:
        pass
    text = _one_line(text)
    return text if len(text) <= 200 else text[:199] + "…"


def _one_line(value) -> str:
    return " ".join(str(value).split())


def _retry_after(headers) -> float | None:
    """Retry-After in seconds (a number or an HTTP date), when the server sent one."""
    value = headers.get("Retry-After") if headers else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
