"""The built-in refiner, prepared once: SmolLM2's GGUF file de-quantised and the shipped adapter merged into
it, saved as a plain safetensors folder in the user's cache, so every later run loads one folder in about a
second instead of de-quantising and applying the adapter (gguf and peft are not even imported).

The folder is named by the fingerprints of its sources, the GGUF file and the adapter's weights and config
(`infra.files.fingerprint`, which reads each file's size and its first and last MiB), and records them in
`prepared.json` (its model card is not a source: editing it prepares nothing). A new package version, a
retrained adapter or another GGUF file prepares a new folder; a folder whose record does not match, or whose
weights fail to load, is prepared again. Preparing removes the folders of other versions that no run has
loaded for a month (`remove_unused`). The folder also keeps the instruction prefixes' caches (`prefixes.py`).
Where the cache cannot be written (a read-only home), the refiner loads from its sources every time, as
before, with one warning.

Merging changes the arithmetic (W + BA once, instead of W·x + B(A·x) per token) by float rounding only;
greedy answers are the same in the tests (tests/test_builtin_refiner.py compares them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

from ..infra.files import atomic_path, fingerprint, write_text_atomic
from .loading import LoadSpec, load_model_and_tokenizer

log = logging.getLogger(__name__)

#: where prepared models go: $PHYPROMPT_CACHE_DIR, else $XDG_CACHE_HOME/phyprompt, else ~/.cache/phyprompt
CACHE_ENV = "PHYPROMPT_CACHE_DIR"
RECORD = "prepared.json"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
NAME = "smollm2-135m-phyprompt"
#: a prepared folder no run has loaded for this long is removed when another is prepared (each is 517 MB)
UNUSED_DAYS = 30


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "phyprompt"


def prepared_folder(spec: LoadSpec) -> tuple[Path, dict]:
    """Where the built-in `spec` (its GGUF file and adapter, as `loading.resolve_builtin` gives them) is
    prepared, and the sources' fingerprints its record must hold."""
    sources = {"gguf": fingerprint(spec.model)} | {
        name: fingerprint(os.path.join(spec.adapter, name)) for name in ADAPTER_FILES}
    digest = hashlib.sha256(json.dumps(sources, sort_keys=True).encode()).hexdigest()[:16]
    return cache_root() / "builtin" / f"{NAME}-{digest}", sources


def is_prepared(spec: LoadSpec) -> bool:
    return _holds(*prepared_folder(spec))


def _holds(folder: Path, sources: dict) -> bool:
    """`folder` is a finished preparation of `sources` (its record, written last, names them)."""
    try:
        return json.loads((folder / RECORD).read_text(encoding="utf-8")).get("sources") == sources
    except (OSError, ValueError):
        return False


def prepare(spec: LoadSpec) -> LoadSpec:
    """The spec that loads the prepared folder (made now if missing or stale), with `spec`'s placement and
    dtype; `spec` itself when the cache cannot be written."""
    folder, sources = prepared_folder(spec)
    if not _holds(folder, sources):
        log.info("preparing the built-in refiner once: de-quantising SmolLM2's GGUF and merging the adapter "
                 "into %s", folder)
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)  # a cache that cannot be written fails before the work
            # float32 on the CPU: the merged weights exactly as the sources give them, whatever the run's dtype
            model, tokenizer = load_model_and_tokenizer(replace(spec, device="cpu", dtype="fp32", load_on=None,
                                                                quantization="none", merge_adapter=True))
            with atomic_path(folder) as partial:
                save_plain(model, tokenizer, partial)
                write_text_atomic(partial / RECORD, json.dumps({"sources": sources, "gguf": spec.model,
                                                                "adapter": spec.adapter}, indent=2) + "\n")
            remove_unused(folder)
        except OSError as error:
            log.warning("could not save the prepared built-in refiner in %s (%s); loading it from its sources "
                        "this time (set %s to a writable folder)", folder, error, CACHE_ENV)
            return spec
    return replace(spec, model=str(folder), adapter=None, merge_adapter=False)


def save_plain(model, tokenizer, folder: str | os.PathLike) -> None:
    """Write a model loaded from a GGUF file as a plain folder (config.json, safetensors, the tokenizer with
    its chat template). Its config carries a quantization_config naming the .gguf file (transformers refuses
    to save such a model, and a folder with it would ask for the file again): a model is built from a clean
    copy of the config and the de-quantised weights are copied into it."""
    import torch
    from transformers import AutoModelForCausalLM

    config = model.config.to_dict()
    config.pop("quantization_config", None)
    plain = AutoModelForCausalLM.from_config(type(model.config).from_dict(config), dtype=torch.float32)
    plain.load_state_dict(model.state_dict())
    plain.generation_config = model.generation_config
    plain.save_pretrained(folder)  # safetensors
    tokenizer.save_pretrained(folder)


def load_prepared(spec: LoadSpec) -> tuple[LoadSpec, tuple]:
    """The built-in's (spec it loads from, (model, tokenizer)): the prepared folder, made first if need be,
    and made again when it fails to load (a damaged cache). A run that prepares still loads the result from
    the folder (a second or two): it answers exactly as every later run will, and a bad save shows at once."""
    from .base import RefinerLoadError

    prepared = prepare(spec)
    try:
        loaded = load_model_and_tokenizer(prepared)
    except RefinerLoadError as error:
        if prepared is spec:
            raise
        log.warning("the prepared built-in refiner in %s did not load (%s); preparing it again", prepared.model,
                    error)
    else:
        if prepared is not spec:
            _mark_used(Path(prepared.model))
        return prepared, loaded
    (Path(prepared.model) / RECORD).unlink(missing_ok=True)
    prepared = prepare(spec)
    return prepared, load_model_and_tokenizer(prepared)


def _mark_used(folder: Path) -> None:
    """The record's modification time says when a run last loaded the folder (see `remove_unused`)."""
    try:
        os.utime(folder / RECORD)
    except OSError:
        pass  # the prepared folder is used as it is; this one is then removed a month after it was made


def remove_unused(keep: Path) -> list[Path]:
    """Remove the prepared folders beside `keep` that no run has loaded for `UNUSED_DAYS` (a package upgrade
    leaves the previous version's behind). Not sooner: two installs of different versions may share the cache,
    and each would otherwise prepare again every time the other ran. Returns what it removed."""
    cutoff = time.time() - UNUSED_DAYS * 86400
    removed = []
    for folder in keep.parent.glob(f"{NAME}-*"):
        record = folder / RECORD
        try:
            last_used = (record if record.exists() else folder).stat().st_mtime
        except OSError:
            continue
        if folder != keep and last_used < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            if not folder.exists():  # a folder another user owns stays, and is not reported
                removed.append(folder)
    if removed:
        log.info("removed %d prepared built-in refiner(s) unused for %d days: %s", len(removed), UNUSED_DAYS,
                 ", ".join(f.name for f in removed))
    return removed
