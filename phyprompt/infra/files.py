"""The one atomic-write helper: a file or a folder appears under its name complete, or not at all.

Whatever is written (a video, a JSON record, a training-data file, an exported model folder) is first
written to a hidden temporary sibling, then renamed over the final name once the writing has finished.
A crash, an error or a cancel midway leaves the old content (if any) and no partial behind, so a user, a
workflow or a loader never opens half a file. The sibling is on the same file system, so the rename is
atomic for a file; a folder that replaces an existing folder is moved aside first (POSIX cannot rename
a folder over a non-empty one), so for that moment the name is briefly absent, but never half-written.

Also here: a file's or folder's content fingerprint (`fingerprint`), what a spec's identity names weights by.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

_EDGE = 1 << 20  # a file is fingerprinted by its size and its first and last MiB


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a hidden temporary sibling of `path` to write a file or create a folder at; when the block
    finishes, rename it over `path` (parent folders are created). On any exception, KeyboardInterrupt and
    ComfyUI's interrupt included, the partial is removed, `path` is left as it was, and the exception
    travels on.

        with atomic_path("out/clip.mp4") as partial:
            encode(frames, partial)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = _hidden_sibling(path, "partial")
    try:
        yield partial
        _replace(partial, path)
    except BaseException:
        _remove(partial)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` through `atomic_path`; returns the path written."""
    with atomic_path(path) as partial:
        partial.write_text(text, encoding=encoding)
    return Path(path)


def _hidden_sibling(path: Path, kind: str) -> Path:
    # Hidden, random (two writers never share one), and without the real suffix, so folder listings
    # (ComfyUI's output browser, model pickers) skip it.
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.{kind}")


def _replace(partial: Path, path: Path) -> None:
    if not (partial.is_dir() and path.is_dir()):
        os.replace(partial, path)
        return
    old = _hidden_sibling(path, "replaced")
    os.replace(path, old)
    try:
        os.replace(partial, path)
    except BaseException:
        os.replace(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _remove(partial: Path) -> None:
    if partial.is_dir() and not partial.is_symlink():
        shutil.rmtree(partial, ignore_errors=True)
    else:
        partial.unlink(missing_ok=True)


@cache
def fingerprint(path: str) -> str:
    """A content fingerprint of a file or a folder (every file under it but hidden ones, by relative path):
    sha256 over each file's size and its first and last MiB. Reads at most 2 MiB a file, so a 15 GB model
    folder is fingerprinted in well under a second; any retraining changes the weights those MiB hold."""
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file or folder: {path}")
    digest = hashlib.sha256()
    files = [("", path)] if os.path.isfile(path) else sorted(
        (os.path.relpath(os.path.join(root, name), path), os.path.join(root, name))
        for root, folders, names in os.walk(path)
        if not _hidden_under(root, path) for name in names if not name.startswith("."))
    for relative, full in files:
        size = os.path.getsize(full)
        digest.update(f"{relative}\0{size}\0".encode())
        with open(full, "rb") as handle:
            digest.update(handle.read(_EDGE))
            if size > 2 * _EDGE:
                handle.seek(-_EDGE, os.SEEK_END)
                digest.update(handle.read())
    return digest.hexdigest()


def _hidden_under(folder: str, top: str) -> bool:
    return any(part.startswith(".") for part in os.path.relpath(folder, top).split(os.sep) if part != ".")
