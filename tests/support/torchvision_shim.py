"""Lets a CUDA-only torchvision wheel import next to the CPU torch of the test environment.

PyPI has no CPU build of torchvision, and ComfyUI (and transformers, when it finds torchvision
installed) imports it. The CUDA wheel's compiled ops fail to load against a CPU torch, and its
Python side then fails on `register_fake("torchvision::nms")` for an operator that was never
defined. Declaring the two operator schemas first lets the import succeed; the ops themselves are
never run by anything in this project.

The test setup installs this module with a `.pth` file into the test environment, so it is active in
every Python process there (pytest, the CLI under test, the ComfyUI server). It costs nothing until
something imports torchvision.
"""

import importlib.abc
import sys

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_libraries = []


def declare_schemas() -> None:
    import torch

    try:
        torch.ops.torchvision.nms  # noqa: B018 - already there (a working torchvision build)
        return
    except (AttributeError, RuntimeError):
        pass
    library = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS:
        library.define(schema)
    _libraries.append(library)  # a Library unregisters its ops when collected


class _BeforeTorchvision(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torchvision":
            sys.meta_path.remove(self)
            declare_schemas()
        return None  # the normal finders do the import


def install() -> None:
    if not any(isinstance(f, _BeforeTorchvision) for f in sys.meta_path) and "torchvision" not in sys.modules:
        sys.meta_path.insert(0, _BeforeTorchvision())


install()
