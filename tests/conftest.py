import os
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
# tests/plugins holds a video backend installed the way a third-party one is (an entry point)
PLUGINS = TESTS / "plugins"
for path in (str(REPO), str(TESTS), str(PLUGINS)):
    if path not in sys.path:
        sys.path.insert(0, path)

# Nothing in the suite may reach the network: every model is built at test time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The built-in refiner is prepared once per run, in a folder of the run's own (never the user's ~/.cache).
os.environ["PHYPROMPT_CACHE_DIR"] = tempfile.mkdtemp(prefix="phyprompt-test-cache-")


@pytest.fixture(scope="session")
def tiny_refiner_dir(tmp_path_factory) -> str:
    from support.tiny_refiner import write_tiny_refiner

    return write_tiny_refiner(tmp_path_factory.mktemp("models") / "tiny-qwen2")


@pytest.fixture(scope="session")
def tiny_adapter_dir(tiny_refiner_dir, tmp_path_factory) -> str:
    from support.tiny_refiner import write_tiny_adapter

    return write_tiny_adapter(tiny_refiner_dir, tmp_path_factory.mktemp("adapters") / "tiny-lora")


@pytest.fixture(scope="session")
def tiny_refiner(tiny_refiner_dir):
    from phyprompt.refiners.local import LocalRefiner

    return LocalRefiner.load(tiny_refiner_dir, device="cpu")


@pytest.fixture(scope="session")
def trained_refiner_dir(tmp_path_factory) -> str:
    """A tiny refiner fine-tuned to answer every prompt with one well-formed contract answer."""
    from support.tiny_refiner import write_trained_tiny_refiner

    return write_trained_tiny_refiner(tmp_path_factory.mktemp("models") / "tiny-trained")
