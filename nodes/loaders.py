"""Loader nodes for refiner and judge kinds, built from each kind's description (`infra.kinds.KindInfo`) as
video_nodes builds the video loaders from `BackendInfo`: node id, title, description, the source input (the
models a kind lists under ComfyUI's model folders, or a server's address) and an input per load option, in
the description's order, with its defaults, choices and help. A kind from another package (an entry point)
gets its node with no change here.

A node turns its inputs into the family's spec (`RefinerSpec`, `JudgeSpec`) and opens it; ComfyUI's own part,
where the weights wait and run, is the family's (`Family.open`). Node ids, input names and order are users'
saved data: they are the descriptions', which keep them as they always were.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import comfy.model_management as mm
import torch
from comfy_api.latest import io

from ..phyprompt.infra.endpoint import chat_completions_url
from ..phyprompt.infra.kinds import KindInfo, LoadOption, ModelSpec, descriptions
from . import model_folders
from .memory import Managed, manage
from .schema import node_schema

#: the device input of every model in this process: ComfyUI's own choice of devices
DEVICE_TOOLTIP = "auto: ComfyUI's GPU, offloaded when a video model needs the memory."


def comfy_devices(device: str, offload: Callable[[], torch.device]) -> tuple[torch.device, torch.device]:
    """(where it runs, where it waits) for a loader's device input: auto is ComfyUI's GPU and the offload device
    `offload()` names; cpu is the CPU for both."""
    if device == "auto":
        return mm.get_torch_device(), offload()
    return torch.device("cpu"), torch.device("cpu")


def option_input(option: LoadOption):
    """A load option's node input, as its description says."""
    name, tooltip, optional = option.widget, option.help, option.optional
    if option.is_path:
        return io.Combo.Input(name, options=[option.unset, *model_folders.option_paths(option)], default=option.unset,
                              optional=optional, tooltip=tooltip)
    if option.choices:
        return io.Combo.Input(name, options=list(option.choices), default=option.default, optional=optional,
                              tooltip=tooltip)
    if isinstance(option.default, bool):
        return io.Boolean.Input(name, default=option.default, optional=optional, tooltip=tooltip)
    if option.is_number:
        kind = io.Float if isinstance(option.default, float) else io.Int
        return kind.Input(name, default=option.unset if option.default is None else option.default,
                          min=option.minimum, max=option.maximum, optional=optional, tooltip=tooltip)
    return io.String.Input(name, default=option.default, optional=optional, tooltip=tooltip)


def option_value(option: LoadOption, value):
    """A node input's value as a spec takes it: `unset` is None (the model's own), a listed file its path."""
    if value is None or value == option.unset:
        return None
    if option.is_path:
        return model_folders.resolve(value, model_folders.option_paths(option), option.name, option.folder_kinds)
    return value


@dataclass(frozen=True)
class Family:
    """What a family's loader nodes share."""

    spec: type[ModelSpec]
    category: str
    aliases: tuple[str, ...]  # the family's search words, before each kind's own
    socket: type  # the output's custom type (io.Custom(...))
    output: str  # the output's name: "refiner", "judge"
    #: opens a kind in this process for ComfyUI: (make, where it runs, where it waits, **the extra inputs), where
    #: make(**placement) is the node's spec with the device the family chooses
    open: Callable[..., Managed]
    #: inputs after the description's for a kind in this process (the refiner's optional after_run)
    extra_inputs: tuple = ()


def loader_node(family: Family, info: KindInfo, kinds: tuple[str, ...]) -> type[io.ComfyNode]:
    """The loader node of `info`, which opens `kinds` (several share one description when the source tells
    them apart: the folder judges)."""
    source = info.source
    on_disk = not info.on_server  # asked, not told by its class: a plugin describes itself with its own copy
    options = [option for option in info.options if option.node]
    in_process = family.spec.family.get(kinds[0]).in_process  # a kind in this process describes its device
    what = f"{family.output} model"

    def models() -> dict[str, str]:
        return model_folders.sources(source)

    def make(path: str, values: dict) -> ModelSpec:
        if len(kinds) == 1:
            return family.spec.of_kind(kinds[0], path, **values)
        return family.spec.parse(path, **values)

    def source_path(value: str) -> str:
        if not on_disk:
            return value
        return model_folders.resolve(value, models(), what, source.folder_kinds)

    class LoadModel(io.ComfyNode):
        @classmethod
        def define_schema(cls) -> io.Schema:
            if on_disk:
                first = io.Combo.Input(source.input, options=list(models()), tooltip=source.help)
            else:
                first = io.String.Input(source.input, default=source.default, tooltip=source.help)
            inputs = [first]
            for option in options:
                if option.name == "device":
                    inputs.append(io.Combo.Input("device", options=["auto", "cpu"], default="auto",
                                                 tooltip=DEVICE_TOOLTIP))
                else:
                    inputs.append(option_input(option))
            return node_schema(
                node_id=info.node_id,
                search_aliases=(*family.aliases, *info.search_aliases),
                display_name=info.display_name,
                category=family.category,
                description=info.description,
                inputs=[*inputs, *(family.extra_inputs if in_process else ())],
                outputs=[family.socket.Output(display_name=family.output)],
            )

        @classmethod
        def validate_inputs(cls, **given) -> bool | str:
            # checked at queue time, before anything runs: a workflow shared from another machine names folders
            # this one may not have, and a typo in a server setting is said now (a value linked from another
            # node's output arrives here as None: execute checks it when it is known)
            try:
                for name, value in given.items():
                    if value is None:
                        continue
                    if name == source.input:
                        if on_disk and len(kinds) == 1:
                            family.spec.build(kinds[0], source_path(value))  # e.g. the built-in model's files
                        elif on_disk:
                            source_path(value)
                        else:
                            chat_completions_url(value)
                    else:
                        option = next(o for o in options if o.widget == name)
                        option.checked(option_value(option, value))  # a path option: found under its folders
            except ValueError as exc:
                return str(exc)
            return True

        @classmethod
        def execute(cls, **inputs) -> io.NodeOutput:
            path = source_path(inputs.pop(source.input))
            values = {option.name: option_value(option, inputs.pop(option.widget, None)) for option in options}
            if not in_process:  # on a server: nothing for ComfyUI's model management
                return io.NodeOutput(manage(make(path, values).open()))
            load_device, offload_device = comfy_devices(values.pop("device", "auto"), mm.text_encoder_offload_device)
            return io.NodeOutput(family.open(lambda **placement: make(path, values | placement), load_device,
                                             offload_device, **inputs))

    # only these reach validate_inputs: core checks every other input's range and choices itself
    checked = [source.input, *(option.widget for option in options if option.is_path or option.check)]
    LoadModel.validate_inputs.__func__.__signature__ = inspect.Signature(
        [inspect.Parameter("cls", inspect.Parameter.POSITIONAL_OR_KEYWORD),
         *(inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None) for name in checked)])
    LoadModel.__name__ = LoadModel.__qualname__ = info.node_id.removeprefix("PhyPrompt")
    return LoadModel


def loader_nodes(family: Family) -> list[type[io.ComfyNode]]:
    """A loader node per description among the family's kinds, built-in ones first."""
    return [loader_node(family, info, kinds) for info, kinds in descriptions(family.spec.family)]
