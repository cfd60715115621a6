"""Physics Refiner (API) inside a real, headless ComfyUI, talking to a real local chat-completions server:
registration, refine → preview, ComfyUI's model management left alone, cancel, errors, the example workflow."""

import json
import shutil
import time

import pytest

from conftest import REPO
from support.chat_server import GOOD_PROMPT, GOOD_REASONING, ChatServer, answer, slow, status, unloaded
from support.comfy_server import ComfyServer
from support.workflow_api import ui_to_api

pytestmark = pytest.mark.comfyui

API_LOAD, LOAD, REFINE, REFINE_LIST = "PhyPromptLoadAPIRefiner", "PhyPromptLoadRefiner", "PhyPromptRefine", \
    "PhyPromptRefineList"
CHAT, GENERATE = "/v1/chat/completions", "/api/generate"
# the node's default keep_alive "0", sent to Ollama's native API at the server's root, once the prompts are in
UNLOAD = {"model": "qwen2.5:7b", "keep_alive": 0}


@pytest.fixture(scope="module")
def chat():
    server = ChatServer()
    yield server
    server.close()


@pytest.fixture
def endpoint(chat):
    """The module's chat server, answering well by default, with nothing recorded yet."""
    chat.script, chat.default, chat.generate = [], answer(), unloaded()
    chat.requests.clear()
    return chat


@pytest.fixture(scope="module")
def comfy(tmp_path_factory, tiny_refiner_dir):
    server = ComfyServer(tmp_path_factory.mktemp("comfyui-api"))
    server.prepare()
    # a local refiner, so there is a model in ComfyUI's memory that an API refiner must leave alone
    shutil.copytree(tiny_refiner_dir, server.models_dir / "LLM" / "tiny-random")
    server.start(("--verbose", "DEBUG"))  # DEBUG: model management logs every model it unloads
    yield server
    server.stop()


def api_graph(url, prompt="a glass is dropped", node=REFINE, **overrides):
    load = dict(url=url, model="qwen2.5:7b", api_key_env="OPENAI_API_KEY", timeout=30, keep_alive="0",
                max_concurrency=4)
    refine = dict(refiner=["1", 0], prompt=prompt, target="cogvideox", seed=0, temperature=0.7, max_new_tokens=512)
    return {
        "1": {"class_type": API_LOAD, "inputs": load | {k: v for k, v in overrides.items() if k in load}},
        "2": {"class_type": node, "inputs": refine | {k: v for k, v in overrides.items() if k in refine}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
        "4": {"class_type": "PreviewAny", "inputs": {"source": ["2", 1]}},
        "5": {"class_type": "PreviewAny", "inputs": {"source": ["2", 2]}},
    }


def texts(entry, node):
    return entry["outputs"][node]["text"]


def message_kinds(entry) -> list[str]:
    return [kind for kind, _ in entry["status"]["messages"]]


def execution_error(entry) -> str:
    assert entry["status"]["status_str"] == "error", entry["status"]
    return next(body for kind, body in entry["status"]["messages"] if kind == "execution_error")["exception_message"]


def test_the_node_is_registered_with_its_widgets(comfy):
    info = comfy.get("/object_info")[API_LOAD]
    assert info["display_name"] == "Physics Refiner (API)" and info["category"] == "PhyPrompt/refine"
    assert info["output"] == ["PHYPROMPT_REFINER"] == comfy.get("/object_info")[LOAD]["output"]
    required = info["input"]["required"]
    assert list(required) == ["url", "model", "api_key_env", "timeout", "keep_alive", "max_concurrency"]
    assert [required[name][0] for name in required] == ["STRING", "STRING", "STRING", "INT", "STRING", "INT"]
    assert required["url"][1]["default"] == "http://127.0.0.1:11434/v1"
    assert required["api_key_env"][1]["default"] == "OPENAI_API_KEY" and "NAME" in required["api_key_env"][1]["tooltip"]
    assert required["keep_alive"][1]["default"] == "0"
    assert required["max_concurrency"][1]["min"] == 1


def test_refine_and_preview_over_a_server(comfy, endpoint):
    entry = comfy.run(api_graph(endpoint.url, seed=5))
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert texts(entry, "3") == [GOOD_PROMPT] and texts(entry, "4") == [GOOD_REASONING]
    assert "/226 tokens for cogvideox" in texts(entry, "5")[0] and "refined" in texts(entry, "5")[0]
    (body,) = endpoint.bodies()
    assert body["model"] == "qwen2.5:7b" and body["seed"] == 5 and "keep_alive" not in body
    assert body["temperature"] == 0.7 and body["max_tokens"] == 512
    assert endpoint.paths() == [CHAT, GENERATE] and endpoint.keep_alive_bodies() == [UNLOAD]


def test_the_list_node_asks_for_every_line(comfy, endpoint):
    entry = comfy.run(api_graph(endpoint.url, "a ball falls\n\na cup tips\nice melts", node=REFINE_LIST))
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert texts(entry, "3") == [GOOD_PROMPT] * 3
    assert sorted(b["seed"] for b in endpoint.bodies()) == [0, 1, 2]
    assert endpoint.paths() == [CHAT] * 3 + [GENERATE]  # once, after the whole list


def test_comfyui_model_management_is_left_alone(comfy, endpoint):
    """With a local refiner loaded (and kept alive by the cache), refining over the API neither loads nor
    unloads any model."""
    graph = api_graph(endpoint.url, "a stone sinks in a pond") | {
        "11": {"class_type": LOAD, "inputs": dict(model="tiny-random", adapter="none", merge_adapter=False,
                                                  dtype="auto", device="auto", quantization="none")},
        "12": {"class_type": REFINE, "inputs": dict(refiner=["11", 0], prompt="a cat jumps", target="cogvideox",
                                                    seed=0, temperature=0.0, max_new_tokens=2)},
        "13": {"class_type": "PreviewAny", "inputs": {"source": ["12", 2]}},
    }
    assert comfy.run(graph)["status"]["status_str"] == "success"
    assert "Requested to load PhyPromptModules" in comfy.log()
    start = len(comfy.log())
    graph["2"]["inputs"]["prompt"] = "a stone skips on a pond"  # only the API refine runs again
    entry = comfy.run(graph)
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert texts(entry, "3") == [GOOD_PROMPT] and len(endpoint.bodies()) == 2
    after = comfy.log()[start:]
    assert "Requested to load" not in after and "Unloading" not in after and "unloaded" not in after, after


def test_cancel_during_a_slow_request_ends_promptly_and_the_next_run_works(comfy, endpoint):
    endpoint.default = slow(30)
    status_code, body = comfy.queue(api_graph(endpoint.url, "a slow glass falls"))
    assert status_code == 200, body
    deadline = time.monotonic() + 60
    while not endpoint.requests:  # the node is now waiting for the server
        assert time.monotonic() < deadline, comfy.log()[-3000:]
        time.sleep(0.05)
    pressed = time.monotonic()
    comfy.post("/interrupt")
    entry = comfy.wait(body["prompt_id"], timeout=30)
    assert time.monotonic() - pressed < 3
    assert "execution_interrupted" in message_kinds(entry) and "execution_success" not in message_kinds(entry)
    while GENERATE not in endpoint.paths():  # keep_alive 0 still frees the server, without holding the cancel up
        assert time.monotonic() < deadline, endpoint.paths()
        time.sleep(0.05)
    assert endpoint.keep_alive_bodies() == [UNLOAD]
    endpoint.default = answer()
    after = comfy.run(api_graph(endpoint.url, "a slow glass falls", seed=1))
    assert after["status"]["status_str"] == "success" and texts(after, "3") == [GOOD_PROMPT]


def test_a_server_error_is_one_clear_node_error(comfy, endpoint):
    endpoint.default = status(404, {"error": {"message": 'model "qwen2.5:7b" not found, try pulling it first'}})
    message = execution_error(comfy.run(api_graph(endpoint.url, "a kite rises")))
    assert "HTTP 404" in message and "try pulling it first" in message and "\n" not in message.strip()
    assert GENERATE not in endpoint.paths()


def test_a_server_without_ollamas_api_still_refines(comfy, endpoint):
    """keep_alive on a server that is not Ollama: the prompt is still refined; the log says what to change."""
    endpoint.generate = status(404, b"404 page not found")
    entry = comfy.run(api_graph(endpoint.url, "a leaf drifts down"))
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert texts(entry, "3") == [GOOD_PROMPT] and endpoint.paths() == [CHAT, GENERATE]
    assert "/api/generate answered HTTP 404 (404 page not found); leave keep_alive empty for other servers" \
        in comfy.log()


@pytest.mark.parametrize("overrides, message", [
    (dict(url="localhost:11434"), "must be an http(s) address"),
    (dict(keep_alive="soon"), "keep_alive must be seconds"),
    (dict(api_key_env="sk-proj-abc123"), "NAME of an environment variable"),
    (dict(model=" "), "model is empty"),
])
def test_bad_settings_are_rejected_before_running(comfy, endpoint, overrides, message):
    status_code, body = comfy.queue(api_graph(**{"url": endpoint.url} | overrides))
    assert status_code == 400 and message in json.dumps(body)
    assert "sk-proj" not in json.dumps(body) and not endpoint.requests


def test_the_example_workflow_runs_against_a_server(comfy, endpoint):
    """workflows/physics_refine_api.json as a user drops it on the canvas, with its url pointed at the test
    server instead of Ollama; everything else as shipped."""
    ui = json.loads((REPO / "workflows" / "physics_refine_api.json").read_text(encoding="utf-8"))
    graph = ui_to_api(ui, comfy.get("/object_info"))
    (load,) = [node for node in graph.values() if node["class_type"] == API_LOAD]
    assert load["inputs"]["url"] == "http://127.0.0.1:11434/v1" and load["inputs"]["keep_alive"] == "0"
    load["inputs"]["url"] = endpoint.url
    entry = comfy.run(graph)
    assert entry["status"]["status_str"] == "success", entry["status"]
    previews = [texts(entry, i) for i, node in graph.items() if node["class_type"] == "PreviewAny"]
    assert [GOOD_PROMPT] in previews and [GOOD_REASONING] in previews and len(previews) == 3
    (body,) = endpoint.bodies()
    assert body["model"] == "qwen2.5:7b" and "keep_alive" not in body
    assert endpoint.paths() == [CHAT, GENERATE] and endpoint.keep_alive_bodies() == [UNLOAD]
