"""The LLaMA sentencepiece tokenizer (`tokenizer.model`) as the reference's transformers 4.28
`LlamaTokenizer` applies it, and the AutoEval's prompt layout.

4.28's slow LlamaTokenizer first splits the text at the literal special tokens "<s>", "</s>" and "<unk>"
(which become their ids, with no stripping of the spaces around them), then runs sentencepiece on each
remaining piece separately, so every piece gets sentencepiece's dummy "▁" prefix. There is no "legacy"
handling yet (that came later in transformers). Using sentencepiece directly repeats this exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..templates import split_template

#: the id the reference gives the video's placeholder tokens (-1 is its image placeholder); never embedded
VIDEO_TOKEN_ID = -2


@dataclass(frozen=True)
class PromptIds:
    """A prompt as the AutoEval reads it: `before` (starting with <s>), the video's tokens, then `after`."""

    before: list[int]
    after: list[int]
    video_tokens: int

    def layout(self) -> list[int]:
        """All ids, with VIDEO_TOKEN_ID where the video's tokens go (the reference's input_ids)."""
        return self.before + [VIDEO_TOKEN_ID] * self.video_tokens + self.after

    def __len__(self) -> int:
        return len(self.before) + self.video_tokens + len(self.after)


class PromptTokenizer:
    def __init__(self, model_file: str):
        try:
            import sentencepiece
        except ImportError:
            raise ImportError("the VideoPhy-2 judge reads its tokenizer.model with sentencepiece: "
                              "pip install sentencepiece") from None
        self._sp = sentencepiece.SentencePieceProcessor(model_file=model_file)
        self.bos_id, self.eos_id, self.unk_id = self._sp.bos_id(), self._sp.eos_id(), self._sp.unk_id()
        if min(self.bos_id, self.eos_id, self.unk_id) < 0:
            raise ValueError(f"{model_file} has no <s>, </s> or <unk> token, so it is not a LLaMA tokenizer")
        self._special = {"<s>": self.bos_id, "</s>": self.eos_id, "<unk>": self.unk_id}
        self._split = re.compile("(" + "|".join(map(re.escape, self._special)) + ")")

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        """Ids of `text` without <s> or </s> added (4.28's `tokenizer(text, add_special_tokens=False)`)."""
        ids: list[int] = []
        for part in self._split.split(text):
            if part in self._special:
                ids.append(self._special[part])
            elif part:
                ids.extend(self._sp.encode(part))
        return ids

    def decode(self, ids: list[int]) -> str:
        """Text of generated ids, special tokens skipped."""
        return self._sp.decode([i for i in ids if i not in (self.bos_id, self.eos_id, self.unk_id)])

    def token_id(self, piece: str) -> int:
        """The id of a single-token piece such as "5"; ValueError when the vocabulary lacks it."""
        found = self._sp.piece_to_id(piece)
        if found == self.unk_id:
            raise ValueError(f"the tokenizer has no token {piece!r}")
        return found

    def prompt(self, text: str, video_tokens: int) -> PromptIds:
        """The reference's layout: <s>, the text before the video placeholder and the text after it, each
        tokenized on its own, with `video_tokens` placeholders between them."""
        before, after = split_template(text)
        return PromptIds([self.bos_id, *self.encode(before)], self.encode(after), video_tokens)
