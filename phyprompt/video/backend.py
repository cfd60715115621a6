"""The interface every video backend implements, the description it gives of itself, and the registry
that finds one by name.

A backend describes itself once, in `info` (a `BackendInfo`): its names, the target whose token budget
the refiner writes for, where its weights are found on disk, its sampling settings with defaults and
valid ranges, its schedulers and its load options. The CLI's help and arguments, the ComfyUI nodes'
widgets and queue-time checks, `generate` and the contract tests all read that description, so a new
backend is one module plus one registry line — or, from another package, one entry point in the
`phyprompt.video_backends` group — and nothing else changes.

The CLI, the nodes, training rewards and evaluation pick a backend with a string and never import a
backend module directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar, Union

from ..infra.checkpoints import ModelFolderError
from ..infra.kinds import LoadOption
from ..infra.lifecycle import free_memory
from ..infra.progress import OptionalProgress
from ..infra.registry import Registry
from ..language.budget import TokenCounter
from .writer import EightBit

if TYPE_CHECKING:  # for annotations only: reading a description (the CLI's help) does not import torch
    import torch

# name -> "module:Class", relative to this package; imported on first use. Other packages add backends as
# entry points in the group `phyprompt.video_backends`: `name = "package.module:Class"`.
BACKENDS = Registry("video backend", __package__, {
    "cogvideox": "cogvideox:CogVideoXBackend",
    "videocrafter2": "videocrafter2.backend:VideoCrafter2Backend",
    "lavie": "lavie.backend:LaVieBackend",
}, group="phyprompt.video_backends")


class VideoModelError(ModelFolderError):
    """A video model folder is missing, incomplete, damaged or of the wrong kind."""


class VideoSettingsError(ValueError):
    """Sampling settings the model cannot do (size, frames, steps, guidance); the message names the fix."""


# --- the self-description ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    """One sampling setting: a `SampleRequest` field with its official default and valid range."""

    name: str  # steps, guidance, frames, width or height
    default: int | float
    minimum: int | float
    maximum: int | float
    step: int | float = 1  # the widget's step; the backend's own check says what the model really needs
    help: str = ""

    @property
    def is_float(self) -> bool:
        return isinstance(self.default, float)


@dataclass(frozen=True)
class DiffusersFolder:
    """Weights in a diffusers pipeline folder whose model_index.json names `pipeline_class`."""

    pipeline_class: str
    folder_kinds: tuple[str, ...]  # the ComfyUI model folders it is looked for in (models/<kind>/)
    example: str = ""  # a hub folder users download, for help texts

    def describe(self) -> str:
        example = f", e.g. {self.example}" if self.example else ""
        return f"a diffusers {self.pipeline_class} folder{example}"


@dataclass(frozen=True)
class Component:
    """A folder a single-file checkpoint needs beside it (e.g. the VAE and text encoder of another model)."""

    name: str  # the keyword `load` takes it as
    weights: DiffusersFolder
    help: str = ""


@dataclass(frozen=True)
class SingleFile:
    """Weights in one checkpoint file (`suffixes`), plus component folders it does not contain; with
    `folder_class`, also a folder the backend's converter wrote (its config.json names that `_class_name`)."""

    suffixes: tuple[str, ...]
    folder_kinds: tuple[str, ...]
    components: tuple[Component, ...] = ()
    example: str = ""
    folder_class: str = ""

    def describe(self) -> str:
        example = f", e.g. {self.example}" if self.example else ""
        converted = f" or a converted {self.folder_class} folder" if self.folder_class else ""
        return f"a {'/'.join(self.suffixes)} checkpoint file{converted}{example}"


Weights = Union[DiffusersFolder, SingleFile]


@dataclass(frozen=True)
class BackendInfo:
    name: str  # the registry name: --backend, generate's records, evaluation tables
    display_name: str  # for people: node titles, help
    node_name: str  # node ids PhyPromptLoad<node_name> and PhyPrompt<node_name>Sampler: users' saved data
    target: str  # the refiner's target (phyprompt.language.targets): the text encoder's budget
    weights: Weights
    settings: tuple[Setting, ...]
    schedulers: tuple[str, ...]  # the first is the default
    fps: float
    load_options: tuple[LoadOption, ...] = ()
    summary: str = ""  # one sentence for help texts and node descriptions
    # "module:function" (relative to phyprompt.video) that converts the original release into what `load`
    # reads fastest and without pickle: `function(source, out, *, dtype=None, **file options given) ->
    # pathlib.Path` (file options: the load options with `suffixes`, e.g. a config the conversion must read),
    # used by `phyprompt convert <name>`; empty: the backend loads its release as is
    converter: str = ""
    # how its float frames become 8-bit, as the original's save path does it (a video `generate` writes has the
    # original's pixels for the same floats); the default, rounding to the nearest level, for backends that do
    # not say
    eight_bit: EightBit = EightBit()

    @property
    def components(self) -> tuple[Component, ...]:
        return getattr(self.weights, "components", ())

    @property
    def load_keywords(self) -> tuple[str, ...]:
        """What `load` takes beyond the path, dtype and device: load options and component folders."""
        return tuple(o.name for o in self.load_options) + tuple(c.name for c in self.components)

    def official(self) -> str:
        """The official settings in a few words, e.g. `50 steps, guidance 6, 49 frames, 720x480`."""
        values = {s.name: s.default for s in self.settings}
        parts = [f"{values.pop('steps')} steps", f"guidance {values.pop('guidance'):g}", f"{values.pop('frames')} frames"]
        parts.append(f"{values.pop('width')}x{values.pop('height')}")
        return ", ".join(parts + [f"{name} {value}" for name, value in values.items()])


@dataclass(frozen=True)
class Video:
    """Frames as float [T, H, W, 3] in 0..1 (ComfyUI's IMAGE batch), and the rate to play them at."""

    frames: torch.Tensor
    fps: float


@dataclass(frozen=True)
class SampleRequest:
    """One video to render. Settings left as None take the backend's defaults."""

    prompt: str
    negative_prompt: str = ""
    seed: int = 0
    steps: int | None = None
    guidance: float | None = None
    frames: int | None = None
    width: int | None = None
    height: int | None = None
    scheduler: str | None = None


@dataclass(frozen=True)
class SampleDefaults:
    steps: int
    guidance: float
    frames: int
    width: int
    height: int
    fps: float
    scheduler: str


# --- the interface ------------------------------------------------------------------------------

class VideoBackend:
    """What the rest of the project asks of a video model. Subclasses set `info` and implement `load`,
    `load_token_counter`, `sample`, the token properties, and `check_settings` (from the description) and
    `check` (from the loaded model) for what their model cannot do."""

    info: ClassVar[BackendInfo]

    @classmethod
    def load(cls, path: str, *, dtype: str = "auto", device: str = "auto", load_on: str | None = None,
             **options) -> "VideoBackend":
        """Load from a local folder or file (see `info.weights`); `options` are `info.load_options` and
        `info.weights.components`. `device` is where it runs (it decides `auto` dtype); `load_on` where
        the weights are put at load time when that differs (ComfyUI loads onto its offload device and
        moves them itself). Raises VideoModelError with a one-line reason."""
        raise NotImplementedError

    @classmethod
    def load_token_counter(cls, path: str, **components) -> TokenCounter:
        """The text encoder's tokenizer alone, without any weights, counting exactly as `count` does: a
        prompt can be fitted to the model (the refiner's budget) before the model itself is loaded.
        `components` are the component folders `load` takes (`info.components`), where the tokenizer may be."""
        raise NotImplementedError

    @property
    def token_limit(self) -> int:
        """Tokens the text encoder reads; the rest of a longer prompt is cut off."""
        raise NotImplementedError

    #: the text encoder's tokenizer as a TokenCounter; a backend that sets it gets `description` and `count`
    counter: TokenCounter | None = None

    @property
    def description(self) -> str:
        """Short name of the text encoder's tokenizer, for token reports."""
        if self.counter is None:
            raise NotImplementedError
        return self.counter.description

    def count(self, text: str) -> int:
        """Tokens `text` takes in this model's text encoder (a TokenCounter, for the refiner's budget)."""
        if self.counter is None:
            raise NotImplementedError
        return self.counter.count(text)

    @classmethod
    def official_defaults(cls) -> SampleDefaults:
        """The official settings of the description: what a request's missing settings take before a model is
        loaded (a loaded one may size them to its checkpoint: `defaults`)."""
        values = {s.name: s.default for s in cls.info.settings}
        return SampleDefaults(fps=cls.info.fps, scheduler=cls.info.schedulers[0], **values)

    @property
    def defaults(self) -> SampleDefaults:
        """The settings a request leaves out take; the official ones unless the model says otherwise."""
        return self.official_defaults()

    @property
    def eight_bit(self) -> EightBit:
        """How this model's frames become 8-bit (`info.eight_bit`, "model" replaced by `frames_dtype`): what
        the writer is given for them."""
        described = self.info.eight_bit
        return replace(described, dtype=self.frames_dtype) if described.dtype == "model" else described

    @property
    def frames_dtype(self) -> str:
        """The float type (e.g. "float16") the model computes its frames in before they are widened to float32;
        needed where `info.eight_bit` says "model"."""
        raise NotImplementedError

    #: the one lifecycle (`infra.lifecycle.HoldsWeights`): a backend's weights live in this process
    in_process: ClassVar[bool] = True

    @property
    def name(self) -> str:
        return self.info.name

    def modules(self) -> dict[str, torch.nn.Module] | None:
        """The torch modules holding the weights, for a host's memory management (ComfyUI moves them
        between devices); None when the backend moves its weights itself (e.g. diffusers' CPU offload)."""
        raise NotImplementedError

    def release(self) -> None:
        """Free the weights now: everything the loaded backend holds but its token counter. The next use of
        any of it loads the backend again with the arguments `load_backend` was given."""
        reopen = self.__dict__.get("_reopen")
        if reopen is None:
            raise RuntimeError(f"this {self.info.display_name} backend was not opened with load_backend, so it "
                               "cannot load itself again after a release")
        counter = self.__dict__.get("counter")
        self.__dict__.clear()
        self.__dict__.update(_reopen=reopen, _released=True, counter=counter)
        free_memory()

    def __getattr__(self, name: str):
        # Reached only for what the instance lacks. After `release` that is the loaded state of a backend
        # (its pipeline, UNet, VAE…, whatever each backend keeps): every backend, plugins included, gets the
        # lifecycle without writing it, and its own code reads its attributes as if they had never gone.
        state = self.__dict__
        if not state.get("_released") or name.startswith("__"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        reopen = state["_reopen"]
        fresh = reopen()
        state.clear()
        state.update(fresh.__dict__, _reopen=reopen)
        return getattr(self, name)

    @classmethod
    def check_settings(cls, settings: dict) -> None:
        """Raise VideoSettingsError for settings in range that no model of this backend can render (sizes and
        frame counts its architecture cannot make), known from the description alone: checked before anything
        is loaded."""

    def check(self, settings: dict) -> None:
        """Raise VideoSettingsError for settings in range that this loaded model still cannot render (what its
        own config decides)."""

    @classmethod
    def check_request(cls, request: SampleRequest) -> dict:
        """The request's settings with the official defaults filled in, checked against everything the
        description knows (ranges, schedulers, `check_settings`) without loading a model: the CLI and the
        nodes' queue-time validation call it, so a setting no model can render fails in a second, not after a
        load of gigabytes. `settings` checks the rest once the model is loaded. A prompt of None is not known
        yet (a node's input linked to another node) and is not checked."""
        return cls._checked(request, cls.official_defaults())

    def settings(self, request: SampleRequest) -> dict:
        """The request's settings with this model's defaults filled in, checked as `check_request` does and by
        `check`. Cheap: callers check before moving weights to the GPU."""
        settings = self._checked(request, self.defaults)
        self.check(settings)
        return settings

    @classmethod
    def _checked(cls, request: SampleRequest, defaults: SampleDefaults) -> dict:
        if request.prompt is not None and not request.prompt.strip():
            raise VideoSettingsError("the prompt is empty: describe the scene you want to see")
        settings = {}
        for setting in cls.info.settings:
            value = getattr(request, setting.name)
            value = getattr(defaults, setting.name) if value is None else value
            _check_range(cls.info, setting, value)
            settings[setting.name] = value
        settings["scheduler"] = request.scheduler or defaults.scheduler
        if settings["scheduler"] not in cls.info.schedulers:
            raise VideoSettingsError(
                f"unknown scheduler {settings['scheduler']!r}; choose one of: {', '.join(cls.info.schedulers)}")
        cls.check_settings(settings)
        return settings

    def sample(self, request: SampleRequest, progress: OptionalProgress = None) -> Video:
        """Render one video; `progress(step, steps)` after each denoising step may raise to cancel."""
        raise NotImplementedError

    def sample_batch(self, requests: Sequence[SampleRequest], progress: OptionalProgress = None) -> list[Video]:
        """Render several videos, each the video `sample` renders for its request alone (up to float
        rounding). Here one after another; a backend whose pipeline takes a batch overrides this to render
        requests of equal settings together. `progress` as in `sample`, for each pass."""
        return [self.sample(request, progress) for request in requests]


def _check_range(info: BackendInfo, setting: Setting, value) -> None:
    made_for = f"{info.display_name} is made for {setting.default:g}"
    if value < setting.minimum:
        bound = "0 or more" if setting.minimum == 0 else f"at least {setting.minimum:g}"
        raise VideoSettingsError(f"{setting.name} must be {bound}, not {value:g} ({made_for})")
    if value > setting.maximum:
        raise VideoSettingsError(f"{setting.name} must be at most {setting.maximum:g}, not {value:g} ({made_for})")


# --- the registry -------------------------------------------------------------------------------

def backend_names() -> tuple[str, ...]:
    return BACKENDS.names()


def backend_class(name: str) -> type[VideoBackend]:
    return BACKENDS.get(name)


def backend_info(name: str) -> BackendInfo:
    return backend_class(name).info


def load_backend(name: str, path: str, **options) -> VideoBackend:
    """The backend `name` loaded from `path` with `options` (see `VideoBackend.load`), able to load itself
    again after a `release`."""
    backend_type = backend_class(name)
    backend = backend_type.load(path, **options)
    backend._reopen = lambda: backend_type.load(path, **options)
    return backend
