"""A real OpenAI-compatible chat-completions server on 127.0.0.1, with replies scripted per request, that
records what it received (path, headers, body, in order of arrival) and how many requests it served at
once. It also takes Ollama's native keep-alive request, POST /api/generate, answered by its own reply."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from phyprompt.language.contract import format_output

GOOD_REASONING = "A dropped glass speeds up under gravity and shatters when it meets the hard floor."
GOOD_PROMPT = "A glass slips from a hand, falls faster and faster, and bursts into shards on the tiles."
GOOD_ANSWER = format_output(GOOD_REASONING, GOOD_PROMPT)
GENERATE_PATH = "/api/generate"

def answer(text: str = GOOD_ANSWER, top_logprobs: list[dict[str, float]] | None = None) -> Callable:
    """`text` as the answer; with `top_logprobs` (one {token: log-probability} per answer token, the first
    entry being the token written), OpenAI's `logprobs` too."""
    choice = {"index": 0, "message": {"role": "assistant", "content": text}}
    if top_logprobs is not None:
        choice["logprobs"] = {"content": [
            {"token": next(iter(tops)), "logprob": next(iter(tops.values())),
             "top_logprobs": [{"token": token, "logprob": logprob} for token, logprob in tops.items()]}
            for tops in top_logprobs]}
    return lambda server, body: (200, {}, {"choices": [choice]})


def status(code: int, payload: "bytes | dict" = b"", **headers) -> Callable:
    return lambda server, body: (code, {k.replace("_", "-"): v for k, v in headers.items()}, payload)


def slow(seconds: float, then: Callable | None = None) -> Callable:
    """Answers after `seconds`, or as soon as the server is closed."""
    def reply(server, body):
        server.closing.wait(seconds)
        return (then or answer())(server, body)
    return reply


def per_prompt(replies: dict, otherwise: Callable | None = None) -> Callable:
    """The reply for the user prompt a request ends with (requests sent together arrive in any order)."""
    def reply(server, body):
        prompt = body["messages"][-1]["content"].rsplit("\n", 1)[-1]
        return replies.get(prompt, otherwise or answer())(server, body)
    return reply


def unloaded() -> Callable:
    """Ollama's answer to /api/generate with no prompt."""
    return lambda server, body: (200, {}, {"model": body.get("model"), "response": "", "done": True,
                                           "done_reason": "unload"})


class ChatServer:
    """`script` replies to the next chat requests in order; after it, `default` replies to every chat
    request; `generate` replies to every /api/generate request. A reply is
    `reply(server, body) -> (status, headers, payload)`; a dict payload is sent as JSON."""

    def __init__(self, *script: Callable, default: Callable | None = None, generate: Callable | None = None):
        self.script, self.default, self.generate = list(script), default or answer(), generate or unloaded()
        self.requests: list[tuple[str, dict, dict]] = []
        self.in_flight = self.most_in_flight = 0
        self.closing = threading.Event()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append((self.path, dict(self.headers), body))
                    if self.path == GENERATE_PATH:
                        reply = server.generate
                    else:
                        reply = server.script.pop(0) if server.script else server.default
                    server.in_flight += 1
                    server.most_in_flight = max(server.most_in_flight, server.in_flight)
                try:
                    code, headers, payload = reply(server, body)
                finally:
                    with server.lock:
                        server.in_flight -= 1
                data = json.dumps(payload).encode() if isinstance(payload, dict) else payload
                try:
                    self.send_response(code)
                    for name, value in headers.items():
                        self.send_header(name, str(value))
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up on this request
                    pass

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def bodies(self) -> list[dict]:
        """The chat requests' bodies."""
        return [body for path, _, body in self.requests if path != GENERATE_PATH]

    def keep_alive_bodies(self) -> list[dict]:
        """The bodies of the /api/generate requests (Ollama's keep_alive)."""
        return [body for path, _, body in self.requests if path == GENERATE_PATH]

    def paths(self) -> list[str]:
        return [path for path, _, _ in self.requests]

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()
