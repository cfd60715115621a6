"""PhyPrompt: physics-aware prompt refinement for text-to-video models.

Importing the package is cheap; the model-loading parts (`LocalRefiner`) import torch and transformers
on first use. The refiner protocol every refiner follows is `phyprompt.refiners.Refiner`.
"""

from .infra.progress import Cancelled, Progress
from .language.contract import ParsedOutput, format_output, parse_output
from .language.instruction import build_messages
from .language.targets import TARGET_NAMES, TARGETS, Target, get_target
from .refiners import Refinement

__version__ = "0.1.0"

__all__ = [
    "Cancelled", "LocalRefiner", "ParsedOutput", "Progress", "Refinement", "RefinerLoadError", "TARGETS",
    "TARGET_NAMES", "Target", "build_messages", "format_output", "get_target", "parse_output", "__version__",
]


def __getattr__(name):  # lazy: these import torch and transformers
    if name == "LocalRefiner":
        from .refiners.local import LocalRefiner

        return LocalRefiner
    if name == "RefinerLoadError":
        from .refiners import RefinerLoadError

        return RefinerLoadError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
