"""What to open of a refiner: `RefinerSpec`, built once where a user's input enters (the command line, the
loader nodes, the evaluation, a training recipe or data command) and then only opened or named. See
`infra.kinds` for what every spec does; this module reads the refiners' own strings."""

from __future__ import annotations

from ..infra.endpoint import is_server
from ..infra.kinds import ModelSpec
from .base import REFINERS


class RefinerSpec(ModelSpec):
    family = REFINERS
    noun = "refiner"

    @classmethod
    def kind_of(cls, text: str) -> str:
        """A server address is the `api` refiner; a source that a kind recognises as its own is that kind's; anything
        else is the `local` refiner's (a folder, a .gguf file, `builtin` or a hub id)."""
        if is_server(text):
            return "api"
        return cls.recognised(text) or "local"
