"""PhyPrompt: physics-aware prompt refinement for text-to-video models.

Importing the package is cheap; the model-loading parts (`Refiner`, `load_refiner`) import torch and
transformers on first use.
"""

from .contract import ParsedOutput, format_output, parse_output
from .instruction import build_messages
from .progress import Cancelled, Progress
from .targets import TARGET_NAMES, TARGETS, Target, get_target

__version__ = "0.1.0"

__all__ = [
    "Cancelled", "ParsedOutput", "Progress", "Refinement", "Refiner", "RefinerLoadError", "TARGETS",
    "TARGET_NAMES", "Target", "build_messages", "format_output", "get_target", "parse_output", "__version__",
]


def __getattr__(name):
    if name in ("Refiner", "Refinement"):
        from . import refiner

        return getattr(refiner, name)
    if name == "RefinerLoadError":
        from .loading import RefinerLoadError

        return RefinerLoadError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
