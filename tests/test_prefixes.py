"""Instruction prefixes' caches saved beside a prepared model: a later process reads them instead of running
the prefix through the model, and answers exactly as if it had; a damaged, foreign or unwritable store only
costs the forward pass."""

import functools

import pytest

from phyprompt.refiners.local import LocalRefiner
from phyprompt.refiners.prefixes import PrefixStore

PROMPT = "a ball rolls down a ramp"


@pytest.fixture
def forwards(tiny_refiner, monkeypatch) -> list[int]:
    """The input length of every forward pass of the tiny refiner's model."""
    lengths = []
    model = tiny_refiner.model
    original = type(model).forward

    @functools.wraps(original)  # the same signature: the refiner reads the cache argument's name from it
    def counted(self, *args, **kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        lengths.append(ids.shape[1])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "forward", counted)
    return lengths


def _fresh(tiny_refiner, folder) -> LocalRefiner:
    """What a new process has: the same weights, no prefix caches in memory."""
    return LocalRefiner(tiny_refiner.model, tiny_refiner.tokenizer, prefixes=PrefixStore(folder))


def test_a_saved_prefix_replaces_its_forward_pass_and_answers_the_same(tiny_refiner, forwards, tmp_path):
    plain = LocalRefiner(tiny_refiner.model, tiny_refiner.tokenizer).refine(PROMPT, "lavie", max_new_tokens=6)
    prefix = forwards[0]  # the instruction, run on its own first
    assert prefix > 32
    first = _fresh(tiny_refiner, tmp_path).refine(PROMPT, "lavie", max_new_tokens=6)
    [saved] = (tmp_path / "prefixes").glob("*.safetensors")
    forwards.clear()
    later = _fresh(tiny_refiner, tmp_path).refine(PROMPT, "lavie", max_new_tokens=6)
    assert prefix not in forwards  # read from the file
    assert [r.raw for r in plain] == [r.raw for r in first] == [r.raw for r in later]
    _fresh(tiny_refiner, tmp_path).refine(PROMPT, "cogvideox", max_new_tokens=2)  # another instruction
    assert len(list((tmp_path / "prefixes").glob("*.safetensors"))) == 2 and saved.is_file()


@pytest.mark.parametrize("damage", ["truncated", "another prefix"])
def test_a_damaged_or_foreign_file_is_computed_again(tiny_refiner, forwards, tmp_path, damage):
    expected = _fresh(tiny_refiner, tmp_path).refine(PROMPT, "lavie", max_new_tokens=6)
    [saved] = (tmp_path / "prefixes").glob("*.safetensors")
    if damage == "truncated":
        saved.write_bytes(saved.read_bytes()[:100])
    else:  # a file saved for another instruction, under this one's name
        other = tmp_path / "other"
        _fresh(tiny_refiner, other).refine(PROMPT, "cogvideox", max_new_tokens=2)
        [foreign] = (other / "prefixes").glob("*.safetensors")
        saved.write_bytes(foreign.read_bytes())
    forwards.clear()
    again = _fresh(tiny_refiner, tmp_path).refine(PROMPT, "lavie", max_new_tokens=6)
    assert forwards[0] > 32  # the prefix ran through the model
    assert [r.raw for r in again] == [r.raw for r in expected]
    forwards.clear()
    _fresh(tiny_refiner, tmp_path).refine(PROMPT, "lavie", max_new_tokens=6)
    assert forwards[0] < 32  # and the file was saved again, whole


def test_a_store_that_cannot_be_written_only_costs_time(tiny_refiner, tmp_path):
    blocked = tmp_path / "prefixes"
    blocked.write_text("a file where the folder would be")
    [result] = _fresh(tiny_refiner, tmp_path).refine(PROMPT, "lavie", max_new_tokens=6)
    assert result.raw and blocked.read_text() == "a file where the folder would be"
