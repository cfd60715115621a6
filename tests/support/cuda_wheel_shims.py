"""Lets the CUDA-only torchvision and torchaudio wheels import next to the CPU torch of the test environment.

PyPI has no CPU build of either, and ComfyUI imports both at start-up (torchaudio since 0.33, through its
audio VAE), as does transformers when it finds them installed. Nothing in this project runs their compiled
ops, so each only has to import:

* torchvision: its compiled ops fail to load against a CPU torch, and its Python side then fails on
  `register_fake("torchvision::nms")` for an operator that was never defined. Declaring the two operator
  schemas first lets the import succeed.
* torchaudio: it loads its compiled extension when the library files are present, and that load fails
  against a CPU torch. Told that they are absent (its `_load_lib` answers False, which is what torchaudio
  does itself when it is deployed without them), it imports in pure-Python mode.

The test setup installs this module with a `.pth` file into each test environment, so it is active in every
Python process there (pytest, the CLI under test, the ComfyUI server). It costs nothing until something
imports torchvision or torchaudio.
"""

import importlib.abc
import importlib.machinery
import sys

_TORCHVISION_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_TORCHAUDIO_LOADER = "torchaudio._extension.utils"
_libraries = []


def declare_torchvision_schemas() -> None:
    import torch

    try:
        torch.ops.torchvision.nms  # noqa: B018 - already there (a working torchvision build)
        return
    except (AttributeError, RuntimeError):
        pass
    library = torch.library.Library("torchvision", "DEF")
    for schema in _TORCHVISION_SCHEMAS:
        library.define(schema)
    _libraries.append(library)  # a Library unregisters its ops when collected


def _no_compiled_library(_name: str) -> bool:
    return False


class _TorchaudioLoader(importlib.abc.Loader):
    """Runs `torchaudio._extension.utils` as usual, then replaces its library loader, before
    `torchaudio._extension` (which imports it by name) calls it."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        module._load_lib = _no_compiled_library


class _CudaWheelShims(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torchvision":
            declare_torchvision_schemas()
        elif name == _TORCHAUDIO_LOADER:
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is not None and spec.loader is not None:
                spec.loader = _TorchaudioLoader(spec.loader)
            return spec
        return None  # the normal finders do the import


def install() -> None:
    if not any(isinstance(f, _CudaWheelShims) for f in sys.meta_path):
        sys.meta_path.insert(0, _CudaWheelShims())


install()
