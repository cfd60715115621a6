"""Model folders and checkpoint files, checked and loaded so that every failure is one line naming the
file and the fix, instead of a deep traceback from torch, transformers or diffusers.

Folder checks (`check_weights_folder`, `read_folder_json`, `check_safetensors`) run before transformers or
diffusers open a Hugging Face folder. The rest loads the original checkpoints the ports need (VideoCrafter2's
`model.ckpt`, LaVie's `lavie_base.pt`, the VideoPhy-2 judge's sharded `.bin`):

- `load_state_dict(path)` reads `.safetensors`, and pickles (`.ckpt .pt .pth .bin`) only through
  `torch.load(weights_only=True)`: unpickling can run any code the file names, and weights_only builds nothing
  but tensors and plain containers. A file it refuses is reported, never retried another way. Zip-format
  pickles (torch.save's format since 1.6) are memory-mapped, so a 7 GB file is not read into RAM up front.
  Files are read on the CPU and only the kept tensors move to `device`.
- `path` is a file, a shard index (`*.index.json` with a `weight_map`, over .bin or .safetensors shards), or a
  folder holding exactly one index, or else exactly one checkpoint file.
- Wrappers: while a dict holds no tensors at its top level, descend into its "state_dict" entry (Lightning),
  else its "module" entry (DeepSpeed), so {"state_dict": {"module": ...}} unwraps too; a dict with tensors at
  the top is never unwrapped. EMA weights are a choice, not a wrapper: `key="ema"` picks that entry first (a
  dotted key, "module.ema", walks nested dicts). Only tensors are kept: epoch, global_step, optimizer states
  and the like are dropped.
- `rename_keys`, `strip_prefix` and `select_prefix` map the file's names onto the module's.
- `load_into(module, state_dict)` compares names and shapes before copying anything. Strict (the default)
  means every module tensor gets a value, every file tensor is used and every shape matches, except keys an
  `ignore` regex names; otherwise `CheckpointMismatchError` gives counts and the first names, so no layer is
  ever left at its random init silently. `strict=False` copies what fits and returns the `LoadReport`.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import pickletools
import re
import struct
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

from safetensors import SafetensorError

if TYPE_CHECKING:  # imported where tensors are read: the folder checks run (and the CLI starts) without torch
    import torch

WEIGHT_SUFFIXES = (".safetensors", ".bin")


class ModelFolderError(ValueError):
    """A model folder is missing, incomplete or damaged; the message says what to do."""


def check_safetensors(path: str, error: type[ModelFolderError] = ModelFolderError) -> None:
    """Catch truncated or garbled safetensors files by reading only their header."""
    size = os.path.getsize(path)
    name = os.path.basename(path)
    try:
        with open(path, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            if header_len > size - 8:
                raise ValueError("header longer than the file")
            header = json.loads(f.read(header_len))
        data_end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (struct.error, ValueError, KeyError, TypeError, IndexError) as exc:
        raise error(f"{name} is not a valid safetensors file ({exc}); download it again") from exc
    if 8 + header_len + data_end > size:
        raise error(f"{name} is truncated ({size} bytes, needs {8 + header_len + data_end}); download it again")


def read_folder_json(folder: str, filename: str, what: str, kind: str,
                     error: type[ModelFolderError] = ModelFolderError) -> dict:
    """The JSON file that marks `folder` as a `kind` (model_index.json, adapter_config.json, …)."""
    if not os.path.isdir(folder):
        raise error(f"{what} folder not found: {folder}")
    path = os.path.join(folder, filename)
    if not os.path.isfile(path):
        raise error(f"{folder} has no {filename}, so it is not {kind}")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def check_weights_folder(folder: str, what: str, error: type[ModelFolderError] = ModelFolderError,
                         hint: str = "") -> None:
    """`folder` exists and holds a config.json and complete, readable weights."""
    if not os.path.isdir(folder):
        raise error(f"{what} folder not found: {folder}")
    if not os.path.isfile(os.path.join(folder, "config.json")):
        raise error(f"{folder} has no config.json, so it is not a Hugging Face model folder{hint}")
    weights = [f for f in os.listdir(folder) if f.endswith(WEIGHT_SUFFIXES)]
    if not weights:
        raise error(f"{folder} holds no weights (*.safetensors or *.bin); copy the model's weight files into it")
    for index in (f for f in os.listdir(folder) if f.endswith(".index.json")):
        with open(os.path.join(folder, index), encoding="utf-8") as f:
            shards = set(json.load(f).get("weight_map", {}).values())
        missing = sorted(s for s in shards if not os.path.isfile(os.path.join(folder, s)))
        if missing:
            raise error(f"{folder} is missing weight shards: {', '.join(missing)}")
    for name in weights:
        if name.endswith(".safetensors"):
            check_safetensors(os.path.join(folder, name), error)


PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
CHECKPOINT_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)
INDEX_SUFFIX = ".index.json"
WRAPPERS = ("state_dict", "module")
SHOWN = 5  # names quoted per list in an error message
ZIP_MAGIC = b"PK\x03\x04"
LEGACY_PICKLES = 4  # a pre-1.6 torch.save file: magic number, protocol, sys info, the object, then raw storage
# Globals every torch.save of plain tensors names; anything else is what made weights_only refuse a file.
TENSOR_GLOBALS = ("torch.", "collections.OrderedDict")
# What torch.load raises for cut or garbled files (weights_only's UnpicklingError is sorted out separately);
# its zip reader raises OSError for a zip header over garbage, after the file opened fine.
DAMAGE_ERRORS = (RuntimeError, EOFError, IndexError, KeyError, ValueError, OSError, struct.error, zipfile.BadZipFile)


class CheckpointError(ModelFolderError):
    """A checkpoint is missing, damaged, unsafe or does not fit; the message names the file and the fix."""


class CheckpointMismatchError(CheckpointError):
    """A state dict does not fit the module it is loaded into: missing, unexpected or misshapen tensors."""


def load_state_dict(path: str | os.PathLike, *, key: str | None = None,
                    device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, shard index or folder, unwrapped by the module docstring's rules."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    if os.path.isdir(path):
        path = _checkpoint_in_folder(path)
    if path.endswith(INDEX_SUFFIX):
        return _load_sharded(path, key, device)
    if not path.endswith(CHECKPOINT_SUFFIXES):
        raise CheckpointError(f"{os.path.basename(path)} is not a checkpoint "
                              f"({', '.join(CHECKPOINT_SUFFIXES)} or *{INDEX_SUFFIX})")
    return _tensors(_read_file(path), key, os.path.basename(path), device)


def _checkpoint_in_folder(folder: str) -> str:
    names = sorted(os.listdir(folder))
    # Shards are checkpoint files too, so an index takes precedence over the files it lists.
    candidates = [n for n in names if n.endswith(INDEX_SUFFIX)] or [n for n in names if n.endswith(CHECKPOINT_SUFFIXES)]
    if not candidates:
        raise CheckpointError(f"{folder} holds no checkpoint ({', '.join(CHECKPOINT_SUFFIXES)} or *{INDEX_SUFFIX})")
    if len(candidates) > 1:
        raise CheckpointError(f"{folder} holds several checkpoints ({_first(candidates)}); pass the one to load")
    return os.path.join(folder, candidates[0])


def _load_sharded(index: str, key: str | None, device: str | torch.device) -> dict[str, torch.Tensor]:
    name, folder = os.path.basename(index), os.path.dirname(index)
    try:
        with open(index, encoding="utf-8") as f:
            weight_map = json.load(f).get("weight_map")
    except (ValueError, AttributeError) as exc:
        raise CheckpointError(f"{name} is not a valid shard index ({_reason(exc)}); download it again") from exc
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{name} has no weight_map, so it is not a shard index")
    shards = sorted(set(weight_map.values()))
    missing = [s for s in shards if not os.path.isfile(os.path.join(folder, s))]
    if missing:
        raise CheckpointError(f"{name} lists {_count(len(missing), 'shard')} missing from {folder}: "
                              f"{_first(missing)}; download them")
    state_dict: dict[str, torch.Tensor] = {}
    for shard in shards:
        state_dict.update(_tensors(_read_file(os.path.join(folder, shard)), key, shard, device))
    return state_dict


def _read_file(path: str) -> object:
    """Whatever the file holds, read on the CPU."""
    if not path.endswith(".safetensors"):
        return _unpickle(path)
    import safetensors.torch

    check_safetensors(path, CheckpointError)
    try:
        return safetensors.torch.load_file(path)
    except SafetensorError as exc:
        raise _damaged(os.path.basename(path), exc) from exc


def _unpickle(path: str) -> object:
    import torch

    with open(path, "rb") as f:
        is_zip = f.read(len(ZIP_MAGIC)) == ZIP_MAGIC
    try:
        # torch can only memory-map zip-format files; legacy ones are read in full.
        return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as exc:
        raise _refusal(path, is_zip) from exc
    except DAMAGE_ERRORS as exc:
        raise _damaged(os.path.basename(path), exc) from exc


def _refusal(path: str, is_zip: bool) -> CheckpointError:
    """weights_only raises UnpicklingError both for objects it will not build and for bytes that are no pickle:
    pickle streams that parse to the end mean a refusal, anything else a damaged file."""
    name = os.path.basename(path)
    try:
        found = [g for g in _pickle_globals(path, is_zip) if not g.startswith(TENSOR_GLOBALS)]
    except (ValueError, EOFError, zipfile.BadZipFile) as exc:
        return _damaged(name, exc)
    objects = f" ({_first(found)})" if found else ""
    return CheckpointError(f"{name} holds objects other than tensors{objects}, so it will not be unpickled for "
                           "safety (weights_only); if you trust its source, convert it to .safetensors and load that")


def _pickle_globals(path: str, is_zip: bool) -> list[str]:
    """The module.name globals the file's pickles import, read without unpickling; ValueError if they do not parse."""
    if is_zip:
        with zipfile.ZipFile(path) as archive:
            member = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
            if member is None:
                raise ValueError("the archive has no data.pkl")
            return _scan_pickles(io.BytesIO(archive.read(member)), 1)
    with open(path, "rb") as stream:
        return _scan_pickles(stream, LEGACY_PICKLES)


def _scan_pickles(stream: IO[bytes], count: int) -> list[str]:
    found: list[str] = []
    strings: list[str] = []  # STACK_GLOBAL (protocol 4+) takes its module and name from the last two strings
    for _ in range(count):
        start = stream.tell()
        if not stream.read(1):  # a plain pickle.dump file ends after its one pickle
            break
        stream.seek(start)
        for opcode, arg, _position in pickletools.genops(stream):
            if opcode.name == "GLOBAL":
                found.append(arg.replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(".".join(strings[-2:]))
            elif isinstance(arg, str):
                strings.append(arg)
    return list(dict.fromkeys(found))


def _tensors(obj: object, key: str | None, name: str, device: str | torch.device) -> dict[str, torch.Tensor]:
    import torch

    obj = _unwrap(_pick(obj, key, name) if key else obj)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{name} holds a {type(obj).__name__}, not a state dict")
    tensors = {k: v.to(device) for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{name} holds no tensors{' under ' + repr(key) if key else ''}{_choices(obj)}")
    return tensors


def _pick(obj: object, key: str, name: str) -> object:
    for part in key.split("."):
        if not isinstance(obj, Mapping) or part not in obj:
            raise CheckpointError(f"{name} has no {key!r} entry{_choices(obj)}")
        obj = obj[part]
    return obj


def _unwrap(obj: object) -> object:
    import torch

    while isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        wrapper = next((w for w in WRAPPERS if isinstance(obj.get(w), Mapping)), None)
        if wrapper is None:
            break
        obj = obj[wrapper]
    return obj


def _choices(obj: object) -> str:
    """The entries a key= could pick at this level, for an error message."""
    nested = [str(k) for k, v in obj.items() if isinstance(v, Mapping)] if isinstance(obj, Mapping) else []
    return f"; choose key= from: {_first(nested)}" if nested else "; it has no nested dicts for key= to pick"


def rename_keys(state_dict: Mapping[str, torch.Tensor],
                rules: Sequence[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """Every key rewritten by every (pattern, replacement) rule in order, with re.sub semantics: a rule sees
    the result of the rules before it, and keys no rule matches stay. Two keys renamed onto one name raise
    CheckpointError instead of one tensor silently replacing the other."""
    compiled = [(re.compile(pattern), replacement) for pattern, replacement in rules]
    renamed: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, tensor in state_dict.items():
        new = key
        for pattern, replacement in compiled:
            new = pattern.sub(replacement, new)
        if new in renamed:
            raise CheckpointError(f"renaming gives {origin[new]!r} and {key!r} the same name {new!r}; fix the rules")
        renamed[new], origin[new] = tensor, key
    return renamed


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """`prefix` dropped from the keys that start with it (DDP's "module."); other keys stay as they are."""
    return rename_keys(state_dict, [("^" + re.escape(prefix), "")])


def select_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Only the keys under `prefix`, without it: an LDM checkpoint's "model.diffusion_model." is its UNet."""
    selected = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not selected:
        raise CheckpointError(f"no key starts with {prefix!r}; keys look like {_first(list(state_dict))}")
    return selected


@dataclass
class LoadReport:
    """How a state dict fitted a module: module keys with no tensor (`missing`), file keys with no place in
    the module (`unexpected`), keys an `ignore` regex excused (`ignored`), and (key, checkpoint shape, module
    shape) for tensors of the wrong shape (`mismatched`)."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        shapes = [f"{k}: checkpoint {list(a)} vs model {list(b)}" for k, a, b in self.mismatched]
        parts = [f"{_count(len(names), what)} ({_first(names)})"
                 for names, what in ((self.missing, "missing key"), (self.unexpected, "unexpected key"),
                                     (shapes, "shape mismatch"))
                 if names]
        return ", ".join(parts) or "every key fits"


def load_into(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], *, ignore: Iterable[str] = (),
              strict: bool = True, assign: bool = False, source: str = "the checkpoint",
              target: str | None = None) -> LoadReport:
    """Copy `state_dict` into `module` after checking names and shapes.

    `ignore`: regexes (re.search) for keys known to differ, on either side: file tensors the module does not
    keep (old `rotary_emb.inv_freq` buffers), or module tensors the file lacks and that keep their initial
    value (tied weights). strict: anything missing, unexpected or misshapen raises CheckpointMismatchError
    "<source> does not fit <target>: …" before a tensor is copied; otherwise the fitting tensors are copied
    and the report says what was not. `assign=True` makes the module keep the file's tensors (their dtype
    and device) instead of copying into its own, e.g. for a module built on the meta device."""
    patterns = [re.compile(p) for p in ignore]

    def excused(key: str) -> bool:
        return any(p.search(key) for p in patterns)

    expected = module.state_dict()
    report = LoadReport()
    for key, tensor in expected.items():
        if key not in state_dict:
            (report.ignored if excused(key) else report.missing).append(key)
        elif state_dict[key].shape != tensor.shape:
            report.mismatched.append((key, tuple(state_dict[key].shape), tuple(tensor.shape)))
    for key in state_dict:
        if key not in expected:
            (report.ignored if excused(key) else report.unexpected).append(key)
    if strict and not report.ok:
        raise CheckpointMismatchError(
            f"{source} does not fit {target or type(module).__name__}: {report.summary()}")
    misshapen = {key for key, _, _ in report.mismatched}
    fitting = {k: v for k, v in state_dict.items() if k in expected and k not in misshapen}
    module.load_state_dict(fitting, strict=False, assign=assign)
    return report


def _first(names: Sequence[str]) -> str:
    return ", ".join(names[:SHOWN]) + (", …" if len(names) > SHOWN else "")


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "es" if what.endswith("ch") else "s")


def _reason(exc: BaseException) -> str:
    """The first sentence of an exception, short enough for a one-line message."""
    lines = str(exc).strip().splitlines()
    return (lines[0].split(". ")[0][:120] if lines else "") or type(exc).__name__


def _damaged(name: str, exc: BaseException) -> CheckpointError:
    return CheckpointError(f"{name} is truncated or damaged ({_reason(exc)}); download it again")
