"""The API refiner and the one HTTP client (phyprompt/infra/endpoint.py) against a real local HTTP server:
answers, fallbacks, retries, errors, what is sent, the concurrency bound, cancel; and the CLI's --endpoint."""

import json
import logging
import os
import socket
import subprocess
import sys
import time

import pytest

from conftest import REPO
from phyprompt.infra.endpoint import (ChatClient, EndpointError, ServerSpec, chat_completions_url, parse_keep_alive,
                                      server_root)
from phyprompt.infra.progress import Cancelled
from phyprompt.refiners import RefinerSpec, refiner_class
from phyprompt.refiners.api import APIRefiner
from support.chat_server import GOOD_PROMPT, GOOD_REASONING, ChatServer, answer, per_prompt, slow, status

# the first prompt's answer comes last
FIRST_SLOWLY = per_prompt({
    "one": slow(0.3, answer("<think>Gravity.</think><prompt>the first, answered last</prompt>")),
})
CHAT, GENERATE = "/v1/chat/completions", "/api/generate"


@pytest.fixture
def chat_server(monkeypatch):
    monkeypatch.setattr(ChatClient, "backoff", 0.01)
    servers = []

    def start(*script, **options):
        servers.append(ChatServer(*script, **options))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def refiner_for(server, **options):
    return APIRefiner.load(ServerSpec(server.url, "m", **options))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and isinstance(excinfo.value, ValueError)
    return message


# --- answers ------------------------------------------------------------------------------------

def test_a_well_formed_answer_is_the_refined_prompt(chat_server):
    server = chat_server()
    [result] = refiner_for(server).refine("a glass is dropped", "cogvideox")
    assert result.ok and result.prompt == GOOD_PROMPT and result.reasoning == GOOD_REASONING
    assert result.target == "cogvideox" and result.tokens <= result.token_limit == 226
    path, headers, body = server.requests[0]
    assert path == "/v1/chat/completions" and body["model"] == "m" and body["stream"] is False
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    user = body["messages"][1]["content"]
    assert user.endswith("a glass is dropped") and "CogVideoX" in user


def test_the_registry_opens_it_and_it_is_not_in_process():
    assert refiner_class("api") is APIRefiner and APIRefiner.in_process is False


def test_a_malformed_answer_falls_back_to_the_original(chat_server):
    server = chat_server(answer("Sure! Here is a better prompt: a ball."), answer(None))
    results = refiner_for(server, max_concurrency=1).refine(["a ball falls", "a cup tips"])
    assert [(r.ok, r.prompt) for r in results] == [(False, "a ball falls"), (False, "a cup tips")]
    assert "kept the original prompt" in results[0].report()


def test_answers_keep_their_order_and_progress_counts_prompts(chat_server):
    server = chat_server(default=FIRST_SLOWLY)
    calls = []
    results = refiner_for(server).refine(["one", "two", "three"], progress=lambda d, t: calls.append((d, t)))
    assert results[0].prompt == "the first, answered last" and results[1].prompt == results[2].prompt == GOOD_PROMPT
    assert calls[-1] == (3, 3) and {t for _, t in calls} == {3}
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


# --- what is sent -------------------------------------------------------------------------------

def test_seed_temperature_budget_keep_alive_and_key_are_sent(chat_server, monkeypatch):
    monkeypatch.setenv("MY_SERVER_KEY", "sk-test-123")
    server = chat_server()
    refiner = refiner_for(server, api_key_env="MY_SERVER_KEY", keep_alive="0")
    refiner.refine(["a", "b"], seed=7, temperature=0.5, max_new_tokens=300)
    bodies = sorted(server.bodies(), key=lambda b: b["seed"])
    assert [b["seed"] for b in bodies] == [7, 8]  # prompt i with seed + i
    assert all(b["temperature"] == 0.5 and b["max_tokens"] == 300 and "keep_alive" not in b for b in bodies)
    assert server.keep_alive_bodies() == [{"model": "m", "keep_alive": 0}]
    # the keep-alive request goes the same way as the chat requests: same key, same headers
    assert len(server.requests) == 3 and {h["Authorization"] for _, h, _ in server.requests} == {"Bearer sk-test-123"}


def test_no_key_variable_means_no_authorization_header(chat_server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server = chat_server()
    refiner_for(server).refine("a cat jumps")
    _, headers, body = server.requests[0]
    assert "Authorization" not in headers and "keep_alive" not in body
    assert server.paths() == [CHAT]  # no keep_alive: nothing is sent to Ollama's native API


def test_huge_seeds_are_sent_in_a_range_every_server_reads(chat_server):
    server = chat_server()
    refiner_for(server).refine("a cat jumps", seed=2**64 - 1)
    assert 0 <= server.bodies()[0]["seed"] < 2**31


def test_keep_alive_goes_once_to_ollamas_native_api_after_every_answer(chat_server):
    """Ollama's OpenAI-compatible endpoint ignores keep_alive, so it is sent once, to <root>/api/generate with
    no prompt, when the last answer is in; here the first prompt is answered last."""
    server = chat_server(default=FIRST_SLOWLY)
    results = refiner_for(server, keep_alive="5m", max_concurrency=2).refine(["one", "two", "three", "four", "five"])
    assert results[0].prompt == "the first, answered last" and all(r.ok for r in results)
    assert server.paths() == [CHAT] * 5 + [GENERATE]
    assert not any("keep_alive" in body for body in server.bodies())
    assert server.keep_alive_bodies() == [{"model": "m", "keep_alive": "5m"}]


def test_keep_alive_finds_the_root_of_a_full_chat_completions_address(chat_server):
    server = chat_server()
    APIRefiner.load(ServerSpec(server.url + "/chat/completions", "m", keep_alive="-1")).refine("a cat jumps")
    assert server.paths() == [CHAT, GENERATE] and server.keep_alive_bodies() == [{"model": "m", "keep_alive": -1}]


def test_concurrency_is_bounded(chat_server):
    server = chat_server(default=slow(0.2))
    results = refiner_for(server, max_concurrency=3).refine([f"scene {i}" for i in range(8)])
    assert len(results) == 8 and len(server.requests) == 8
    assert server.most_in_flight == 3


# --- retries and errors -------------------------------------------------------------------------

def test_429_is_retried_after_the_servers_retry_after(chat_server):
    server = chat_server(status(429, {"error": {"message": "slow down"}}, Retry_After="1"))
    start = time.monotonic()
    [result] = refiner_for(server).refine("a glass is dropped")
    assert result.ok and len(server.requests) == 2
    assert time.monotonic() - start >= 0.9


def test_5xx_is_retried_then_given_up_with_one_line(chat_server):
    server = chat_server(default=status(500, {"error": {"message": "out of\nmemory"}}))
    with pytest.raises(EndpointError) as excinfo:
        refiner_for(server, retries=2).refine("a glass is dropped")
    message = one_line_error(excinfo)
    assert len(server.requests) == 3
    assert "gave up" in message and "after 3 tries" in message and "HTTP 500 (out of memory)" in message


def test_401_names_the_variable_and_never_the_key(chat_server, monkeypatch):
    server = chat_server(default=status(401, {"error": {"message": "Incorrect API key provided: sk-sec***"}}))
    monkeypatch.delenv("MY_SERVER_KEY", raising=False)
    with pytest.raises(EndpointError) as excinfo:
        refiner_for(server, api_key_env="MY_SERVER_KEY").refine("x")
    assert "HTTP 401" in one_line_error(excinfo) and "set $MY_SERVER_KEY" in str(excinfo.value)
    monkeypatch.setenv("MY_SERVER_KEY", "sk-secret-value")
    with pytest.raises(EndpointError) as excinfo:
        refiner_for(server, api_key_env="MY_SERVER_KEY").refine("x")
    message = one_line_error(excinfo)
    assert "$MY_SERVER_KEY was not accepted" in message and "sk-sec" not in message
    assert len(server.requests) == 2  # not retried


def test_404_says_check_the_address_and_the_model(chat_server):
    server = chat_server(default=status(404, {"error": {"message": 'model "m" not found, try pulling it first'}}))
    with pytest.raises(EndpointError) as excinfo:
        refiner_for(server).refine("x")
    message = one_line_error(excinfo)
    assert "HTTP 404" in message and "not found, try pulling it" in message and "model name 'm'" in message


def keep_alive_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "phyprompt.infra.endpoint" and r.levelno == logging.WARNING]


def test_a_server_without_ollamas_api_still_refines_and_warns(chat_server, caplog):
    server = chat_server(generate=status(404, b"404 page not found"))
    with caplog.at_level(logging.WARNING, logger="phyprompt.infra.endpoint"):
        [result] = refiner_for(server, keep_alive="0").refine("a glass is dropped")
    assert result.ok and result.prompt == GOOD_PROMPT and server.paths() == [CHAT, GENERATE]
    (warning,) = keep_alive_warnings(caplog)
    root = server.url.removesuffix("/v1")
    assert warning.startswith(f"keep_alive is Ollama's: {root}/api/generate answered HTTP 404")
    assert warning.endswith("leave keep_alive empty for other servers") and "\n" not in warning


def test_a_keep_alive_request_that_gets_no_answer_is_a_warning_too(chat_server, caplog):
    server = chat_server(generate=slow(5))
    with caplog.at_level(logging.WARNING, logger="phyprompt.infra.endpoint"):
        [result] = refiner_for(server, keep_alive="0", timeout=0.3).refine("a glass is dropped")
    assert result.ok and server.paths() == [CHAT, GENERATE]  # tried once
    (warning,) = keep_alive_warnings(caplog)
    assert "keep_alive was not applied: could not reach" in warning and "/api/generate" in warning


def test_after_a_failure_keep_alive_is_not_sent(chat_server):
    server = chat_server(default=status(404, {"error": {"message": 'model "m" not found'}}))
    with pytest.raises(EndpointError):
        refiner_for(server, keep_alive="0").refine(["x", "y"])
    assert GENERATE not in server.paths()


def test_a_timeout_is_retried_then_reported(chat_server):
    server = chat_server(default=slow(2.0))
    with pytest.raises(EndpointError) as excinfo:
        refiner_for(server, timeout=0.3, retries=1).refine("x")
    assert "no answer within 0.3 s" in one_line_error(excinfo) and len(server.requests) == 2


def test_an_unreachable_port_asks_whether_the_server_runs():
    port = free_port()
    start = time.monotonic()
    with pytest.raises(EndpointError) as excinfo:
        APIRefiner.load(ServerSpec(f"http://127.0.0.1:{port}/v1", "m")).refine("x")
    assert f"is the server running at 127.0.0.1:{port}?" in one_line_error(excinfo)
    assert time.monotonic() - start < 2  # a refused connection is not retried


@pytest.mark.parametrize("reply, message", [
    (status(200, b"<html>hello</html>"), "not JSON"),
    (status(200, {"object": "list", "data": []}), "no choices[0].message.content"),
    (status(200, {"choices": [{"message": {"content": ["a", "list"]}}]}), "not text"),
])
def test_a_reply_that_is_not_chat_completions_is_an_error(chat_server, reply, message):
    with pytest.raises(EndpointError) as excinfo:
        refiner_for(chat_server(default=reply)).refine("x")
    assert message in one_line_error(excinfo)


@pytest.mark.parametrize("options, message", [
    (dict(url="ftp://example.com/v1"), "must be an http"),
    (dict(model="  "), "give the model name"),
    (dict(api_key_env="sk-live-abcdef"), "NAME of an environment variable"),
    (dict(keep_alive="soon"), "keep_alive must be seconds"),
    (dict(timeout=0), "timeout must be more than 0"),
    (dict(max_concurrency=0), "max_concurrency must be at least 1"),
])
def test_settings_are_checked_when_the_spec_is_built(options, message):
    arguments = {"url": "http://127.0.0.1:1/v1", "model": "m"} | options
    with pytest.raises(EndpointError, match=message) as excinfo:
        RefinerSpec.build("api", arguments.pop("url"), **arguments)
    assert "sk-live" not in str(excinfo.value)


def test_urls_and_keep_alive_values():
    assert chat_completions_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"
    assert chat_completions_url("https://h/v1/chat/completions") == "https://h/v1/chat/completions"
    assert [server_root(u) for u in ("http://h:11434/v1", "http://h:11434/v1/", "http://h:11434/v1/chat/completions",
                                     "https://h/ollama/v1", "http://h:8080")] == [
        "http://h:11434", "http://h:11434", "http://h:11434", "https://h/ollama", "http://h:8080"]
    assert [parse_keep_alive(v) for v in ("0", "-1", " 300 ", "5m", "1h30m", "", None)] == [0, -1, 300, "5m", "1h30m",
                                                                                          None, None]


def test_request_checks_are_the_protocols(chat_server):
    refiner = refiner_for(chat_server())
    with pytest.raises(ValueError, match="prompt 2 is empty"):
        refiner.refine(["a cat", "  "])
    assert refiner.refine([]) == []


# --- cancel -------------------------------------------------------------------------------------

def test_cancel_during_a_slow_request_returns_promptly_and_the_next_call_works(chat_server):
    server = chat_server(slow(30))
    refiner = refiner_for(server)
    start = time.monotonic()

    def progress(done, total):
        if time.monotonic() - start > 0.5:
            raise Cancelled

    with pytest.raises(Cancelled):
        refiner.refine("a glass is dropped", progress=progress)
    assert time.monotonic() - start < 2
    [result] = refiner.refine("a glass is dropped")
    assert result.prompt == GOOD_PROMPT
    refiner.release()  # holds nothing: still usable
    assert refiner.refine("a glass is dropped")[0].ok


def test_a_cancel_still_sends_keep_alive_without_waiting_for_it(chat_server):
    """keep_alive 0 should still free the server after a cancel; it is sent from a background thread, so a
    server slow to take it does not hold the cancel up."""
    server = chat_server(slow(30), generate=slow(30))
    start = time.monotonic()

    def progress(done, total):
        if time.monotonic() - start > 0.3:
            raise Cancelled

    with pytest.raises(Cancelled):
        refiner_for(server, keep_alive="0").refine("a glass is dropped", progress=progress)
    assert time.monotonic() - start < 2
    while GENERATE not in server.paths():
        assert time.monotonic() - start < 10
        time.sleep(0.02)
    assert server.paths() == [CHAT, GENERATE] and server.keep_alive_bodies() == [{"model": "m", "keep_alive": 0}]


# --- the command line ---------------------------------------------------------------------------

def phyprompt(*args, env=None):
    return subprocess.run([sys.executable, "-m", "phyprompt", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env=os.environ | (env or {}))


def test_cli_refines_on_a_server(chat_server):
    server = chat_server()
    run = phyprompt("refine", "a glass is dropped", "--endpoint", server.url, "--endpoint-model", "qwen2.5:7b",
                    "--target", "lavie", "--seed", "3", "--keep-alive", "-1", "--api-key-env", "CLI_TEST_KEY",
                    env={"CLI_TEST_KEY": "k-1"})
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == GOOD_PROMPT and "/77 tokens for lavie" in run.stderr
    (_, headers, body), (path, generate_headers, generate) = server.requests
    assert body["model"] == "qwen2.5:7b" and body["seed"] == 3 and "keep_alive" not in body
    assert path == GENERATE and generate == {"model": "qwen2.5:7b", "keep_alive": -1}
    assert headers["Authorization"] == generate_headers["Authorization"] == "Bearer k-1"


def test_cli_refines_a_file_on_a_server_in_order(chat_server, tmp_path):
    server = chat_server(default=FIRST_SLOWLY)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("one\ntwo\nthree\n")
    run = phyprompt("refine", "--file", str(prompts), "--endpoint", server.url, "--endpoint-model", "m",
                    "--batch-size", "2", "--keep-alive", "0", "--quiet")
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [(r["original"], r["prompt"]) for r in rows] == [
        ("one", "the first, answered last"), ("two", GOOD_PROMPT), ("three", GOOD_PROMPT)]
    assert sorted(b["seed"] for b in server.bodies()) == [0, 1, 2]
    # the whole list is one call (--batch-size is the local model's): keep_alive 0 unloads once, at the end
    assert server.paths() == [CHAT, CHAT, CHAT, GENERATE]


@pytest.mark.parametrize("args, message", [
    (["--endpoint", "http://127.0.0.1:1/v1", "--endpoint-model", "m", "--model", "x"], "leave out --model"),
    (["--endpoint", "http://127.0.0.1:1/v1", "--endpoint-model", "m", "--adapter", "x"], "leave out --adapter"),
    (["--endpoint", "http://127.0.0.1:1/v1"], "--endpoint needs --endpoint-model"),
    (["--endpoint-model", "m"], "go with --endpoint"),
    (["--keep-alive", "0"], "go with --endpoint"),
    (["--endpoint", "http://x/v1", "--endpoint-model", "m", "--keep-alive", "later"], "keep_alive must be seconds"),
    (["--endpoint", "http://x/v1", "--endpoint-model", "m", "--api-key-env", "sk-abc"], "NAME of an environment"),
])
def test_cli_endpoint_options_that_do_not_fit_exit_2(args, message):
    run = phyprompt("refine", "a cat", *args)
    assert run.returncode == 2 and message in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert "sk-abc" not in run.stderr


def test_generate_takes_the_endpoint_instead_of_refiner():
    run = phyprompt("generate", "a cat", "--model", "x", "--refiner", "y", "--endpoint", "http://127.0.0.1:1/v1",
                    "--endpoint-model", "m")
    assert run.returncode == 2 and "leave out --refiner" in run.stderr


def test_generate_refines_on_a_server_before_rendering(chat_server, tmp_path):
    from support.tiny_cogvideox import write_tiny_cogvideox

    model = write_tiny_cogvideox(tmp_path / "cogvideox")
    server = chat_server()
    out = tmp_path / "video.mp4"
    run = phyprompt("generate", "a glass is dropped", "--model", str(model), "--steps", "1", "--frames", "9",
                    "--size", "16x16", "--device", "cpu", "--out", str(out), "--quiet", "--endpoint", server.url,
                    "--endpoint-model", "m", "--keep-alive", "0")
    assert run.returncode == 0, run.stderr
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["prompt"] == record["refinement"]["prompt"] == GOOD_PROMPT
    assert record["refiner"] == f"m at {server.url}" and record["settings"]["refiner_temperature"] == 0.0
    (body,) = server.bodies()
    assert "CogVideoX" in body["messages"][1]["content"] and "keep_alive" not in body
    assert server.paths() == [CHAT, GENERATE] and server.keep_alive_bodies() == [{"model": "m", "keep_alive": 0}]


@pytest.mark.parametrize("replies, status", [
    ({"two": answer("no tags, no prompt")}, 0),  # one prompt refined is enough
    ({name: answer("no tags, no prompt") for name in ("one", "two", "three")}, 3),  # nothing refined
])
def test_cli_exit_status_with_a_fallback_among_refined_prompts(chat_server, tmp_path, replies, status):
    server = chat_server(default=per_prompt(replies))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("one\ntwo\nthree\n")
    run = phyprompt("refine", "--file", str(prompts), "--endpoint", server.url, "--endpoint-model", "m", "--quiet")
    assert run.returncode == status, run.stderr
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [row["ok"] for row in rows] == [name not in replies for name in ("one", "two", "three")]
    assert ("nothing was refined: all 3 prompts fell back to the original" in run.stderr) == (status == 3)


def test_cli_server_failures_are_one_error_line(chat_server):
    server = chat_server(default=status(401))
    run = phyprompt("refine", "a cat", "--endpoint", server.url, "--endpoint-model", "m", "--api-key-env",
                    "UNSET_TEST_KEY")
    assert run.returncode == 1 and run.stderr.strip().splitlines() == [
        f"phyprompt refine: error: {server.url}/chat/completions answered HTTP 401 (not authorized): set "
        "$UNSET_TEST_KEY to the server's API key"]
