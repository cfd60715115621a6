"""A loader and a sampler node for every registered video backend, built from the backend's own
description (`BackendInfo`): widgets, defaults, ranges, schedulers, load options and model lists all come
from there, so a new backend gets its nodes without a change here.

Node ids are `PhyPromptLoad<node_name>` and `PhyPrompt<node_name>Sampler` (CogVideoX:
PhyPromptLoadCogVideoX, PhyPromptCogVideoXSampler) and input names and order are those of the
description: both are users' saved data. The sampler returns ComfyUI's IMAGE batch plus an fps for core
CreateVideo → SaveVideo.
"""

from __future__ import annotations

import logging

import comfy.model_management as mm
from comfy_api.latest import io

from ..phyprompt.infra.devices import DTYPES
from ..phyprompt.language.budget import token_use
from ..phyprompt.video.backend import SampleRequest, Setting, VideoSettingsError, backend_class, backend_info, backend_names
from ..phyprompt.video.spec import BackendSpec
from . import model_folders
from .loaders import comfy_devices, option_input, option_value
from .memory import Managed, manage, progress_bar
from .refiner_nodes import MAX_SEED
from .schema import VIDEO, node_schema

log = logging.getLogger(__name__)
VideoModelType = io.Custom("PHYPROMPT_VIDEO_MODEL")


def _setting_input(setting: Setting):
    kind = io.Float if setting.is_float else io.Int
    return kind.Input(setting.name, default=setting.default, min=setting.minimum, max=setting.maximum,
                      step=setting.step, tooltip=setting.help or None)


def loader_node(name: str) -> type[io.ComfyNode]:
    info = backend_info(name)
    weights = info.weights
    what = f"{info.display_name} model"
    components = info.components

    def models() -> dict[str, str]:
        return model_folders.video_models(weights)

    def resolve(model: str) -> str:
        return model_folders.resolve(model, models(), what, model_folders.weight_kinds(info))

    class LoadVideoModel(io.ComfyNode):
        @classmethod
        def define_schema(cls) -> io.Schema:
            folders = " or ".join(f"models/{kind}" for kind in weights.folder_kinds)
            return node_schema(
                node_id=f"PhyPromptLoad{info.node_name}",
                search_aliases=(info.display_name, info.name, "load video model", "text to video", "PhyPrompt"),
                display_name=f"Load {info.display_name}",
                category=VIDEO,
                description=f"Loads {info.summary or info.display_name} from {weights.describe()} under {folders}.",
                inputs=[
                    io.Combo.Input("model", options=list(models()), tooltip=f"The model: {weights.describe()}."),
                    *(io.Combo.Input(c.name, options=list(model_folders.video_models(c.weights)),
                                     tooltip=c.help or c.weights.describe()) for c in components),
                    io.Combo.Input("dtype", options=list(DTYPES), default="auto",
                                   tooltip="auto: the checkpoint's own precision on GPU, fp32 on CPU."),
                    io.Combo.Input("device", options=["auto", "cpu"], default="auto",
                                   tooltip="auto: ComfyUI's GPU, offloaded when another model needs the memory."),
                    *map(option_input, info.load_options),
                ],
                outputs=[VideoModelType.Output(display_name="video_model")],
            )

        @classmethod
        def validate_inputs(cls, model) -> bool | str:
            if model is None:  # linked to another node's output: not known before the graph runs; execute checks it
                return True
            try:
                resolve(model)
            except ValueError as exc:
                return str(exc)
            return True

        @classmethod
        def execute(cls, model, dtype, device, **inputs) -> io.NodeOutput:
            options = {option.name: option_value(option, inputs.get(option.name)) for option in info.load_options}
            for component in components:
                options[component.name] = model_folders.resolve(
                    inputs[component.name], model_folders.video_models(component.weights), component.name,
                    component.weights.folder_kinds)
            load_device, offload_device = comfy_devices(device, mm.unet_offload_device)
            spec = BackendSpec.build(name, resolve(model), dtype=dtype, device=str(load_device), **options)
            return io.NodeOutput(manage(spec.open(load_on=str(offload_device)), load_device, offload_device))

    LoadVideoModel.__name__ = LoadVideoModel.__qualname__ = f"Load{info.node_name}"
    return LoadVideoModel


def sampler_node(name: str) -> type[io.ComfyNode]:
    info = backend_info(name)

    class VideoSampler(io.ComfyNode):
        @classmethod
        def define_schema(cls) -> io.Schema:
            return node_schema(
                node_id=f"PhyPrompt{info.node_name}Sampler",
                search_aliases=(info.display_name, info.name, "text to video", "video sampler", "physics",
                                "PhyPrompt"),
                display_name=f"{info.display_name} Sampler",
                category=VIDEO,
                description=f"Renders a video from a prompt with {info.display_name}. Wire Physics Refine's "
                            "`refined` into `positive`; save with CreateVideo → SaveVideo.",
                inputs=[
                    VideoModelType.Input("video_model"),
                    io.String.Input("positive", multiline=True, default="",
                                    tooltip="The prompt (e.g. Physics Refine's refined output)."),
                    io.String.Input("negative", multiline=True, default="", tooltip="What to avoid (optional)."),
                    io.Int.Input("seed", default=0, min=0, max=MAX_SEED, control_after_generate=True),
                    *map(_setting_input, info.settings),
                    io.Combo.Input("scheduler", options=list(info.schedulers), default=info.schedulers[0],
                                   tooltip=f"The sampler ({info.display_name}'s default: {info.schedulers[0]})."),
                ],
                outputs=[
                    io.Image.Output("images", display_name="images", tooltip="The frames, for CreateVideo."),
                    io.Float.Output("fps", display_name="fps", tooltip="The rate the model was trained for."),
                    io.String.Output("report", display_name="report",
                                     tooltip="The prompt's tokens / the text encoder's limit; a warning if it is cut."),
                ],
            )

        @classmethod
        def validate_inputs(cls, positive=None, frames=None, width=None, height=None) -> bool | str:
            """At queue time, before any loader runs: an empty prompt and a size or frame count the description
            shows no model can render (as the CLI checks them). The inputs named here skip core's range check,
            and the description's check does it instead; a linked input is None, not known yet (a default
            stands in for a setting), and `execute` checks it with the loaded model."""
            try:
                backend_class(name).check_request(SampleRequest(prompt=positive, frames=frames, width=width,
                                                                height=height))
            except VideoSettingsError as exc:
                return str(exc)
            return True

        @classmethod
        def execute(cls, video_model: Managed, positive, negative, seed, scheduler, **settings) -> io.NodeOutput:
            request = SampleRequest(prompt=positive, negative_prompt=negative, seed=seed, scheduler=scheduler,
                                    **settings)
            steps = video_model.model.settings(request)["steps"]  # bad settings fail before weights move to the GPU
            try:
                backend = video_model.ready()
                report = token_report(backend, positive)
                video = backend.sample(request, progress=progress_bar(steps))
            finally:
                video_model.done()
            return io.NodeOutput(video.frames, video.fps, report)

    VideoSampler.__name__ = VideoSampler.__qualname__ = f"{info.node_name}Sampler"
    return VideoSampler


def token_report(backend, prompt: str) -> str:
    """Tokens used / the limit; over the limit, a warning that is also logged (the encoder will cut it)."""
    use = token_use(prompt, backend, backend.token_limit)
    if not use.over:
        return use.summary()
    report = "WARNING: " + use.warning(reader=backend.info.display_name)
    log.warning("PhyPrompt: %s", report)
    return report


def video_nodes() -> list[type[io.ComfyNode]]:
    """Loader and sampler of every registered backend, built-in ones first."""
    return [node(name) for name in backend_names() for node in (loader_node, sampler_node)]
