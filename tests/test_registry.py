"""The one registry mechanism every family uses: lazy members, entry-point plugins, broken plugins left out."""

import logging
import sys
import types
from importlib.metadata import EntryPoint

import pytest

from phyprompt.infra import registry
from phyprompt.judges import JUDGES
from phyprompt.refiners import REFINERS
from phyprompt.video.backend import BACKENDS
from train.rewards import REWARDS


@pytest.fixture
def plugins(monkeypatch):
    """Entry points of a made-up group, as installed packages would declare them."""
    module = types.ModuleType("phyprompt_test_members")
    module.Good = type("Good", (), {})
    monkeypatch.setitem(sys.modules, "phyprompt_test_members", module)
    points = [EntryPoint("good", "phyprompt_test_members:Good", "phyprompt.test_family"),
              EntryPoint("broken", "phyprompt_no_such_module:Thing", "phyprompt.test_family"),
              EntryPoint("same", "phyprompt_test_members:Good", "phyprompt.test_family")]
    monkeypatch.setattr(registry, "entry_points",
                        lambda group: [p for p in points if p.group == group])
    return module


def test_built_ins_come_first_then_plugins_and_a_broken_plugin_is_left_out(plugins, caplog):
    family = registry.Registry("test member", "json", {"same": "decoder:JSONDecoder"}, group="phyprompt.test_family")
    with caplog.at_level(logging.WARNING):
        assert family.names() == ("same", "good")
    assert "skipping test member 'broken'" in caplog.text
    assert family.get("good") is plugins.Good
    import json.decoder

    assert family.get("same") is json.decoder.JSONDecoder  # a plugin never replaces a built-in
    assert "good" in family and "broken" not in family
    with pytest.raises(ValueError, match=r"unknown test member 'nope'; choose one of: same, good"):
        family.get("nope")


def test_every_family_uses_it_with_its_own_entry_point_group():
    groups = {family.group for family in (REFINERS, BACKENDS, JUDGES, REWARDS)}
    assert groups == {"phyprompt.refiners", "phyprompt.video_backends", "phyprompt.judges", "phyprompt.rewards"}
    assert REFINERS.builtin_names() == ("local", "api")
    assert JUDGES.builtin_names() == ("videophy2", "vlm", "api")
    assert "semantic" in REWARDS and "cogvideox" in BACKENDS


@pytest.mark.parametrize("family, kind", [(REFINERS, "local"), (REFINERS, "api"), (JUDGES, "videophy2"),
                                          (JUDGES, "vlm"), (JUDGES, "api")])
def test_every_model_has_the_one_lifecycle(family, kind):
    import inspect

    from phyprompt.infra.lifecycle import HoldsWeights

    member = family.get(kind)
    assert isinstance(member.in_process, bool) and callable(member.load)
    for method in ("modules", "release"):
        assert list(inspect.signature(getattr(member, method)).parameters) == \
            list(inspect.signature(getattr(HoldsWeights, method)).parameters)
