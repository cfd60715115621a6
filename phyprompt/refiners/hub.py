"""Hugging Face hub ids, for callers that allow downloads (the command line, `train.export`).

A hub id is downloaded when the hub answers. When it cannot be asked (HF_HUB_OFFLINE is set, or the hub
does not answer within `PROBE_TIMEOUT` seconds) the copy in the local Hugging Face cache is used, and
without one `HubUnavailableError` says so in one line, in seconds: no minutes of download retries.
"""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request

from .base import RefinerLoadError

PROBE_TIMEOUT = 5.0  # seconds the hub has to answer at all before it is taken for unreachable
_TRUE = {"1", "on", "yes", "true"}  # huggingface_hub's own reading of its boolean variables


class HubUnavailableError(RefinerLoadError):
    """A hub id that cannot be downloaded now and is not in the local cache."""

    def __init__(self, message: str, model: str, offline: bool):
        super().__init__(message)
        self.model = model
        self.offline = offline  # True: HF_HUB_OFFLINE; False: the hub did not answer


def offline() -> bool:
    """HF_HUB_OFFLINE (or transformers' older TRANSFORMERS_OFFLINE) is set."""
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def endpoint() -> str:
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def reachable(url: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether the server at `url` answers HTTP at all (any status) within `timeout` seconds. Name lookup
    has no timeout of its own, so the request runs in a thread that is given up on after `timeout`."""
    answered = []

    def ask():
        request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "phyprompt"})
        try:
            with urllib.request.urlopen(request, timeout=timeout):
                answered.append(True)
        except urllib.error.HTTPError:  # an answer, even if not a happy one
            answered.append(True)
        except (OSError, ValueError):  # refused, unresolvable, timed out, a malformed HF_ENDPOINT
            pass

    thread = threading.Thread(target=ask, name="phyprompt-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answered)


def cached_snapshot(model: str) -> str | None:
    """The folder of `model`'s copy in the local Hugging Face cache (its main revision), if there is one."""
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(model, "config.json")
    return os.path.dirname(config) if isinstance(config, str) else None


def resolve_hub_id(model: str) -> str:
    """How to load the hub id `model`: the id itself when the hub answers (transformers downloads it or
    checks its cache against the hub); the cached copy's folder when the hub cannot be asked; else
    HubUnavailableError."""
    is_offline = offline()
    url = endpoint()
    if not is_offline and reachable(url):
        return model
    snapshot = cached_snapshot(model)
    if snapshot is not None:
        return snapshot
    why = "HF_HUB_OFFLINE is set" if is_offline else f"the Hugging Face hub ({url}) does not answer"
    raise HubUnavailableError(f"could not load refiner {model}: {why} and it is not in the local Hugging Face "
                              "cache", model, is_offline)
