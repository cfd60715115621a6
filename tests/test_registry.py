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


# every kind of both families, the plugins' among them (tests/plugins' toy refiner and toy judge)
KINDS = [(family, kind) for family in (REFINERS, JUDGES) for kind in family.names()]


def test_the_plugins_kinds_come_after_the_built_ins():
    assert REFINERS.names() == ("local", "api", "toy") and JUDGES.names() == ("videophy2", "vlm", "api", "toy")


@pytest.mark.parametrize("family, kind", KINDS, ids=lambda value: getattr(value, "group", value))
def test_every_model_has_the_one_lifecycle(family, kind):
    import inspect

    from phyprompt.infra.lifecycle import HoldsWeights

    member = family.get(kind)
    assert isinstance(member.in_process, bool) and callable(member.load)
    for method in ("modules", "release"):
        assert list(inspect.signature(getattr(member, method)).parameters) == \
            list(inspect.signature(getattr(HoldsWeights, method)).parameters)


@pytest.mark.parametrize("family, kind", KINDS, ids=lambda value: getattr(value, "group", value))
def test_every_kind_describes_what_it_opens_and_its_options(family, kind):
    """The description makes the loader node (its id is users' saved data), the options a spec checks and the
    command line's flags: every option well formed, and a kind on a server takes its server's settings."""
    from phyprompt.infra.kinds import SERVER_SETTINGS, KindInfo, ModelFiles, Server

    info = family.get(kind).info
    assert isinstance(info, KindInfo) and info.node_id.startswith("PhyPrompt") and info.display_name
    names = [option.name for option in info.options]
    assert len(set(names)) == len(names) and "load_on" not in names
    for option in info.options:
        assert option.help, option.name
        assert not option.choices or option.default in option.choices, option.name
        assert option.default is not None or option.unset is not None or not option.node, option.name
    if isinstance(info.source, Server):
        assert "model" in names and set(names) & set(SERVER_SETTINGS) <= set(SERVER_SETTINGS)
    else:
        assert isinstance(info.source, ModelFiles) and info.source.folder_kinds and info.source.input


def test_node_ids_are_one_per_description():
    """Kinds that share a description share its node (VideoPhy-2's AutoEval and the video-language models:
    one Load Physics Judge); every other node id is its kind's alone."""
    infos = {id(family.get(kind).info): family.get(kind).info for family, kind in KINDS}
    node_ids = [info.node_id for info in infos.values()]
    assert len(node_ids) == len(set(node_ids)) == len(KINDS) - 1
    assert JUDGES.get("videophy2").info is JUDGES.get("vlm").info
