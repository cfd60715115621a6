"""What an evaluation compares: refiners and video backends under the labels its tables give them, each a
family's spec (`refiners.spec.RefinerSpec`, `video.spec.BackendSpec`) whose `identity()` goes into cache keys.

An identity names the weights by content, not by path: a folder or file is fingerprinted
(`infra.files.fingerprint`), so a retrained adapter written over the old one misses the cache, and a copied
model folder still hits it. A model on a server cannot be fingerprinted: its identity is the address and the
model name, so a server that swaps the weights behind a name must be given a new name (or a new cache folder).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from ..refiners.spec import RefinerSpec
from ..video.spec import BackendSpec

ORIGINAL = "original"  # the label of "no refinement": the user's caption goes to the video model as is


@dataclass(frozen=True)
class Compared:
    """A refiner or a video backend under its label; a refiner's spec is None for the original prompts."""

    label: str
    spec: Union[RefinerSpec, BackendSpec, None]

    def to_dict(self) -> dict:
        """For results.json: what was compared under this label."""
        if self.spec is None:
            return {"kind": ORIGINAL}
        return self.spec.to_dict() if isinstance(self.spec, RefinerSpec) else {
            "backend": self.spec.name, "path": self.spec.path, "options": dict(self.spec.options)}


def file_name(label: str) -> str:
    """A label (a refiner's, a backend's) as a safe part of a file name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
