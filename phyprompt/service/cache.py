"""A content-hash cache of results: JSON records and video files under one folder.

A result is stored under `key(**parts)`, the sha256 of the canonical JSON of everything that determines
it (model identity, settings, seed, prompt text...). The same parts always give the same key, so a
re-run finds what an earlier run made and a changed setting misses the cache by construction; nothing
is ever invalidated by hand.

Layout: `<root>/<kind>/<key[:2]>/<key>.json`, and for a video its file beside its record
(`<key>.mp4`). Every file is written through the one atomic-write helper (`files.atomic_path`), so an
entry is either complete or absent: a killed or cancelled process leaves at most a hidden `.partial`
sibling that no reader looks at. A video's file is written before its record and a video counts as
cached only when both are there, so a process killed between the two leaves an orphan file that the
next `put_video` simply replaces. Two processes (or threads) writing the same key each write their own
temporary file and rename it into place; the last rename wins and both wrote the same content anyway.

No evaluation logic lives here: callers decide what a key's parts are and what a record holds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..infra.files import atomic_path, write_text_atomic

log = logging.getLogger(__name__)

#: mixed into every key: bump it when the meaning of a stored record changes, and old entries stop matching
FORMAT_VERSION = 1

_KIND = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_KEY = re.compile(r"[0-9a-f]{64}")


def canonical_json(value: Any) -> str:
    """The one text of `value` a key is hashed from: sorted keys, no spaces, UTF-8 as is, and a float with
    an integral value written as an int (a guidance of 6 from a default and 6.0 from a command line are the
    same setting). Tuples are lists. NaN and infinities are refused: they have no stable JSON text."""
    return json.dumps(_normalised(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def key(**parts: Any) -> str:
    """The cache key of a result determined by `parts` (JSON-able values): 64 hex digits."""
    text = canonical_json({"format": FORMAT_VERSION, "parts": parts})
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def eight_bit_part(eight_bit) -> dict:
    """The key part for how a video's frames became 8-bit (a backend's `info.eight_bit`): none for the default,
    the conversion from before backends described theirs, so that the videos cached then keep their keys."""
    from ..video.writer import EightBit

    return {} if eight_bit == EightBit() else {"eight_bit": asdict(eight_bit)}


class Cache:
    """Records of several kinds ("refinement", "video", "score", ...) under `root`, created on first write."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def path(self, kind: str, key: str, suffix: str = ".json") -> Path:
        """Where the entry `key` of `kind` lives (whether or not it exists)."""
        if not _KIND.fullmatch(kind):
            raise ValueError(f"a cache kind is a short lower-case name such as 'video', not {kind!r}")
        if not _KEY.fullmatch(key):
            raise ValueError(f"not a cache key (64 hex digits from cache.key): {key!r}")
        return self.root / kind / key[:2] / f"{key}{suffix}"

    def get(self, kind: str, key: str) -> dict | None:
        """The record stored under `key`, or None. An unreadable record (only a disk failure or a hand edit
        makes one) counts as missing, with a warning, and is replaced by the next `put`."""
        path = self.path(kind, key)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            log.warning("ignoring the damaged cache record %s", path)
            return None
        return record if isinstance(record, dict) else None

    def put(self, kind: str, key: str, record: dict) -> Path:
        """Store `record` (a JSON-able dict) under `key`, atomically; returns its path."""
        text = json.dumps(record, ensure_ascii=False, allow_nan=False, indent=1) + "\n"
        return write_text_atomic(self.path(kind, key), text)

    def get_video(self, key: str, kind: str = "video") -> tuple[Path, dict] | None:
        """The video file stored under `key` and its record, or None when either is missing."""
        record = self.get(kind, key)
        if record is None:
            return None
        path = self.path(kind, key, record.get("suffix", ".mp4"))
        return (path, record) if path.is_file() else None

    def put_video(self, key: str, data: bytes, fps: float, record: dict | None = None, *, suffix: str = ".mp4",
                  kind: str = "video") -> tuple[Path, dict]:
        """Store a video file's bytes (written by the one video writer, here or in a worker elsewhere) as the
        video of `key`, then its record (`record` plus the suffix and fps); returns the file's path and the
        record stored."""
        with atomic_path(self.path(kind, key, suffix)) as partial:
            partial.write_bytes(data)
        record = {**(record or {}), "suffix": suffix, "fps": float(fps)}
        self.put(kind, key, record)
        return self.path(kind, key, suffix), record


def _normalised(value: Any) -> Any:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} cannot be part of a cache key")
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {str(k): _normalised(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalised(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"a cache key part must be JSON data (str, number, bool, None, list, dict), not "
                    f"{type(value).__name__}")
