"""How a kind of model describes itself, and the spec a user's input becomes before it is opened.

A family (refiners, judges) registers kinds by name (`registry`); each kind class carries `info`, a `KindInfo`:
what it is opened from (`ModelFiles` on disk, or a `Server`), its load options (`LoadOption`: defaults,
choices, help) and its ComfyUI loader node (id, title, description). That one description makes the loader
node, the command line's options for a kind from another package, and the checks of a `ModelSpec`. Video
backends describe themselves with `video.backend.BackendInfo`, whose load options are `LoadOption`s too.

A `ModelSpec` is built once where a user's input enters (the command line, a node, a recipe, the evaluation):
the kind is decided there, the options are checked against the kind's description (and a server's settings
by `endpoint.ServerSpec`), and below it the spec is only opened (`open()`) or named (`identity()`): nothing
reads the user's string again. A kind's `load(source, **options)` takes the path for a kind on disk, the
`ServerSpec` for a kind on a server.

Importing this module imports neither torch nor a kind: the command line reads descriptions before it runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Union

from .devices import DTYPES
from .endpoint import DEFAULT_API_KEY_ENV, DEFAULT_TIMEOUT, ServerSpec, check_env_name, check_model_name
from .files import fingerprint
from .registry import Registry

#: where a model in this process runs: a host resolves "auto" for itself and keys its caches by what it chose
PLACEMENT = ("dtype", "device")
#: the options a kind on a server takes for its `ServerSpec` (the rest are its own)
SERVER_SETTINGS = tuple(f.name for f in fields(ServerSpec) if f.name != "url")


class OptionError(ValueError):
    """An option a kind does not take, or a value it cannot take: bad arguments (the command line exits 2)."""


@dataclass(frozen=True)
class LoadOption:
    """One choice a kind (or a video backend) is loaded with: a boolean, one of `choices`, a number, a text,
    or a file (`suffixes`) or folder (`marker`) given by its path. `default` is what a node shows first; None
    is the model's own choice, which a node shows as `unset`."""

    name: str  # the keyword `load` takes, the node's input (unless `input` says otherwise), the flag --name
    default: Any
    choices: tuple[str, ...] = ()
    help: str = ""
    suffixes: tuple[str, ...] = ()  # a file with one of these suffixes (e.g. VideoCrafter2's .yaml config)
    folder_kinds: tuple[str, ...] = ()  # where ComfyUI lists such files or folders (models/<kind>/)
    marker: str = ""  # a folder holding this file (e.g. a PEFT adapter's adapter_config.json)
    minimum: float | None = None  # a number: the node widget's range
    maximum: float | None = None
    unset: Any = None  # what a node shows for None: "auto", "none", 0
    input: str = ""  # the node input's name where it is not `name`: input names are users' saved data
    check: Callable[[Any], Any] | None = None  # a given value as `load` takes it; raises ValueError
    optional: bool = False  # a node input that came after workflows were saved without it
    node: bool = True  # False: no node input (e.g. downloads, which ComfyUI never makes)

    @property
    def is_path(self) -> bool:
        return bool(self.suffixes or self.marker)

    @property
    def is_number(self) -> bool:
        return self.minimum is not None or (isinstance(self.default, (int, float)) and not isinstance(self.default, bool))

    @property
    def widget(self) -> str:
        return self.input or self.name

    def checked(self, value: Any) -> Any:
        """`value` as `load` takes it (None: not given); OptionError for a value outside `choices`, `check`'s
        error otherwise."""
        if value is None:
            return None
        if self.choices and value not in self.choices:
            raise OptionError(f"{self.name} must be one of: {', '.join(self.choices)}; not {value!r}")
        return self.check(value) if self.check is not None else value


def dtype_option(help: str, input: str = "") -> LoadOption:
    """The dtype a model in this process loads in: "auto" is the kind's own choice for the device it runs on."""
    return LoadOption("dtype", "auto", DTYPES, help, input=input)


#: the device a model in this process runs on: any torch device, "auto" the best there is (a node offers the
#: devices of its host's model management instead)
DEVICE = LoadOption("device", "auto", help="auto, cpu, cuda, cuda:N or mps")


def server_options(model: str, model_help: str, api_key_help: str, timeout_help: str) -> tuple[LoadOption, ...]:
    """The settings every kind on a server takes for its `ServerSpec`, with the example model a node shows."""
    return (LoadOption("model", model, help=model_help, check=check_model_name),
            LoadOption("api_key_env", DEFAULT_API_KEY_ENV, help=api_key_help, check=check_env_name),
            LoadOption("timeout", int(DEFAULT_TIMEOUT), minimum=1, maximum=3600, help=timeout_help))


@dataclass(frozen=True)
class ModelFiles:
    """A kind opened from disk: folders holding `marker` and files with one of `suffixes`, listed by a node
    from ComfyUI's models/<kind>/ folders, plus `builtins` that need no file ({what a node lists: the source})."""

    input: str  # the loader node's input: "model", "judge"
    folder_kinds: tuple[str, ...]
    help: str = ""
    marker: str = "config.json"
    suffixes: tuple[str, ...] = ()
    builtins: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Server:
    """A kind opened from an OpenAI-compatible server: the node's `url` input and, among the kind's options,
    the `SERVER_SETTINGS` of its `ServerSpec` (model, api_key_env, timeout…)."""

    default: str
    help: str = ""
    input: str = "url"


@dataclass(frozen=True)
class KindInfo:
    """A kind's self-description (see the module docstring)."""

    node_id: str  # its ComfyUI loader node: users' saved data, never changed
    display_name: str
    description: str
    source: Union[ModelFiles, Server]
    options: tuple[LoadOption, ...] = ()
    search_aliases: tuple[str, ...] = ()

    @property
    def on_server(self) -> bool:
        return isinstance(self.source, Server)

    def option(self, name: str) -> LoadOption | None:
        return next((option for option in self.options if option.name == name), None)


def descriptions(family: Registry) -> list[tuple[KindInfo, tuple[str, ...]]]:
    """Each description among a family's kinds once, with the kinds that share it (a source that tells them
    apart: the folder judges), built-in kinds first."""
    shared: dict[int, tuple[KindInfo, list[str]]] = {}
    for name in family.names():
        info = family.get(name).info
        shared.setdefault(id(info), (info, []))[1].append(name)
    return [(info, tuple(names)) for info, names in shared.values()]


@dataclass(frozen=True)
class ModelSpec:
    """What to open: the kind `kind` of a family, from `source` (a path, or for a kind on a server its
    `ServerSpec`), with `options` as its `load` takes them. Made with `build` (or a family's `parse`)."""

    kind: str
    source: Union[str, ServerSpec]
    options: Mapping[str, Any] = field(default_factory=dict)

    family: ClassVar[Registry]  # the family's registry, set by each subclass
    noun: ClassVar[str]  # "refiner", "judge": for messages

    @classmethod
    def build(cls, kind: str, source: str, **options) -> ModelSpec:
        """The spec of `kind` from `source` and `options` (a None option is not given: the kind's own default),
        checked against the kind's description; for a kind on a server, the `SERVER_SETTINGS` among the
        options make its `ServerSpec` (with `source` as the address). A kind on disk that can tell more about
        its source without loading (a built-in model's files are installed) does so now: `resolve`."""
        member = cls.family.get(kind)
        info: KindInfo = member.info
        checked = {}
        for name, value in options.items():
            if value is None:
                continue
            option = info.option(name)
            if option is None:
                raise OptionError(f"{name} is not an option of the {kind} {cls.noun}")
            checked[name] = option.checked(value)
        if info.on_server:
            settings = {name: checked.pop(name) for name in SERVER_SETTINGS if name in checked}
            return cls(kind, ServerSpec(source, settings.pop("model", ""), **settings), checked)
        source = os.path.expanduser(source)
        cls._resolved(member, source, checked)
        return cls(kind, source, checked)

    def open(self, **placement):
        """The model, loaded. `placement` is where a host puts it beyond the spec (ComfyUI's `load_on`, the
        device its weights wait on)."""
        return self.family.get(self.kind).load(self.source, **self.options, **placement)

    def identity(self) -> dict:
        """What it is, for cache keys: a server's address and model name; on disk, the weights by content (the
        source and every file option, fingerprinted: a model retrained in place is another model, a copied
        one the same) and the other options. Not the placement, which a host resolves and keys itself."""
        if isinstance(self.source, ServerSpec):
            return {"kind": self.kind, **self.source.identity()}
        member = self.family.get(self.kind)
        source, options = self._resolved(member, self.source, dict(self.options))
        weights = {"model": fingerprint(source)}
        for option in member.info.options:
            if option.is_path:
                path = options.get(option.name)
                weights[option.name] = fingerprint(path) if path else None
        others = {name: value for name, value in sorted(options.items())
                  if name not in weights and name not in PLACEMENT}
        return {"kind": self.kind, **weights, **others}

    def to_dict(self) -> dict:
        """For records (the evaluation's results.json): the kind, the source and the options."""
        source = self.source.to_dict() if isinstance(self.source, ServerSpec) else self.source
        return {"kind": self.kind, "source": source, "options": dict(self.options)}

    @staticmethod
    def _resolved(member, source: str, options: dict) -> tuple[str, dict]:
        """The files `source` and `options` stand for (`member.resolve`, for a kind that has built-in models),
        or themselves."""
        resolve = getattr(member, "resolve", None)
        return resolve(source, options) if resolve is not None else (source, options)

    @classmethod
    def parse(cls, text: str, **options) -> ModelSpec:
        """The spec a user's one string names (a recipe's, a data command's, the judge command's), its kind read
        from the string by `kind_of`; see `of_kind`."""
        return cls.of_kind(cls.kind_of(text), text, **options)

    @classmethod
    def of_kind(cls, kind: str, source: str, **options) -> ModelSpec:
        """`build`, from a caller that offers every kind the placement and a server's settings (a command line, a
        recipe): those the kind does not describe are left out (a server's settings for a kind on disk, the
        placement for a kind on a server or one that places itself)."""
        info = cls.family.get(kind).info
        offered = (*PLACEMENT, *SERVER_SETTINGS)
        return cls.build(kind, source, **{name: value for name, value in options.items()
                                          if name not in offered or info.option(name) is not None})

    @classmethod
    def kind_of(cls, text: str) -> str:
        """The kind a user's string names; each family reads its own (a server address is its `api` kind)."""
        raise NotImplementedError

    @classmethod
    def recognised(cls, source: str) -> str | None:
        """The first kind whose `recognises(source)` says the source is its own, or None. Only kinds that
        recognise their sources are asked (a family's catch-all kind has no such method)."""
        for name in cls.family.names():
            recognises = getattr(cls.family.get(name), "recognises", None)
            if recognises is not None and recognises(source):
                return name
        return None
