"""The atomic-write helper: a file or folder appears complete or not at all, and a failure leaves the old one."""

import pytest

from phyprompt.infra.files import atomic_path, write_text_atomic


def names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_file_is_written_under_a_hidden_name_then_renamed(tmp_path):
    target = tmp_path / "deep" / "er" / "record.json"
    with atomic_path(target) as partial:
        assert partial.parent == target.parent and partial.name.startswith(".") and partial.suffix == ".partial"
        partial.write_text("complete")
        assert not target.exists()  # nothing under the real name until the block is done
    assert target.read_text() == "complete" and names(target.parent) == ["record.json"]


def test_a_file_is_replaced(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("old")
    assert write_text_atomic(target, "new ✓\n") == target
    assert target.read_text(encoding="utf-8") == "new ✓\n" and names(tmp_path) == ["notes.txt"]


@pytest.mark.parametrize("interruption", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_failed_file_write_keeps_the_old_file_and_leaves_no_partial(tmp_path, interruption):
    target = tmp_path / "clip.gif"
    target.write_bytes(b"old video")
    with pytest.raises(type(interruption)):
        with atomic_path(target) as partial:
            partial.write_bytes(b"half a vid")
            raise interruption
    assert target.read_bytes() == b"old video" and names(tmp_path) == ["clip.gif"]


def test_a_folder_is_created_and_replaced_whole(tmp_path):
    target = tmp_path / "models" / "refiner"
    with atomic_path(target) as partial:
        partial.mkdir()
        (partial / "config.json").write_text("{}")
    assert names(target) == ["config.json"]

    with atomic_path(target) as partial:
        partial.mkdir()
        (partial / "model.safetensors").write_text("weights")
    assert names(target) == ["model.safetensors"]  # nothing of the old folder is mixed in
    assert names(target.parent) == ["refiner"]  # no .partial or .replaced left


@pytest.mark.parametrize("interruption", [ValueError("no chat template"), KeyboardInterrupt()])
def test_a_failed_folder_write_keeps_the_old_folder_and_leaves_no_partial(tmp_path, interruption):
    target = tmp_path / "refiner"
    target.mkdir()
    (target / "config.json").write_text("old")
    with pytest.raises(type(interruption)):
        with atomic_path(target) as partial:
            partial.mkdir()
            (partial / "config.json").write_text("new")
            raise interruption
    assert names(tmp_path) == ["refiner"] and (target / "config.json").read_text() == "old"


def test_a_folder_can_replace_an_empty_folder(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    with atomic_path(target) as partial:
        partial.mkdir()
        (partial / "a.txt").write_text("a")
    assert names(target) == ["a.txt"] and names(tmp_path) == ["out"]


def test_a_failed_rename_keeps_the_old_folder(tmp_path, monkeypatch):
    import phyprompt.infra.files as files

    target = tmp_path / "refiner"
    target.mkdir()
    (target / "config.json").write_text("old")
    real_replace, calls = files.os.replace, []

    def fail_second_rename(source, destination):
        calls.append(source)
        if len(calls) == 2:  # the old folder is already aside: it must come back
            raise OSError("rename failed")
        real_replace(source, destination)

    monkeypatch.setattr(files.os, "replace", fail_second_rename)
    with pytest.raises(OSError, match="rename failed"):
        with atomic_path(target) as partial:
            partial.mkdir()
            (partial / "config.json").write_text("new")
    assert names(tmp_path) == ["refiner"] and (target / "config.json").read_text() == "old"
