"""phyprompt.infra.checkpoints: reading checkpoint files safely and loading them into modules with a report."""

import json
import os
import pickle
import random
import shlex

import pytest
import torch
from safetensors.torch import save_file

from phyprompt.infra.checkpoints import (
    CheckpointError,
    CheckpointMismatchError,
    ModelFolderError,
    load_into,
    load_state_dict,
    rename_keys,
    select_prefix,
    strip_prefix,
)


def tensors(**shapes):
    return {name.replace("__", "."): torch.randn(*shape) for name, shape in shapes.items()}


SD = tensors(layer__weight=(4, 3), layer__bias=(4,), norm__weight=(4,))
NOISE = random.Random(0).randbytes(4096)


def assert_same(loaded, expected):
    assert loaded.keys() == expected.keys()
    for key, tensor in expected.items():
        assert torch.equal(loaded[key], tensor), key


class Net(torch.nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.layer = torch.nn.Linear(3, width)
        self.norm = torch.nn.LayerNorm(width)


class Bomb:
    """Unpickling this runs a shell command that creates `marker`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


# --- reading files ---------------------------------------------------------------------------------

def test_safetensors_round_trip_keeps_dtype(tmp_path):
    sd = {"a": torch.randn(2, 3).to(torch.bfloat16), "b": torch.arange(4)}
    save_file(sd, str(tmp_path / "m.safetensors"))
    loaded = load_state_dict(tmp_path / "m.safetensors")
    assert_same(loaded, sd)
    assert loaded["a"].dtype == torch.bfloat16


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".pth", ".bin"])
@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_pickle_suffixes_round_trip(tmp_path, suffix, zip_format):
    path = tmp_path / f"model{suffix}"
    torch.save(SD, path, _use_new_zipfile_serialization=zip_format)
    assert_same(load_state_dict(str(path)), SD)


def test_device_is_honoured(tmp_path):
    torch.save(SD, tmp_path / "m.pt")
    assert {t.device.type for t in load_state_dict(tmp_path / "m.pt", device="meta").values()} == {"meta"}


def test_lightning_checkpoint_unwraps_and_drops_non_tensors(tmp_path):
    optimizer = {"state": {0: {"exp_avg": torch.zeros(4, 3)}}, "param_groups": [{"lr": 1e-4}]}
    torch.save({"state_dict": SD, "epoch": 3, "global_step": 10, "optimizer_states": [optimizer]},
               tmp_path / "model.ckpt")
    assert_same(load_state_dict(tmp_path / "model.ckpt"), SD)


@pytest.mark.parametrize("wrapped", [{"module": SD}, {"state_dict": {"module": SD}}], ids=["module", "both"])
def test_deepspeed_module_unwraps(tmp_path, wrapped):
    torch.save(wrapped, tmp_path / "model.pt")
    assert_same(load_state_dict(tmp_path / "model.pt"), SD)


def test_top_level_tensors_are_never_unwrapped(tmp_path):
    torch.save({"betas": torch.ones(3), "state_dict": SD, "step": 7}, tmp_path / "model.ckpt")
    assert list(load_state_dict(tmp_path / "model.ckpt")) == ["betas"]


def test_key_picks_ema_over_the_wrapper(tmp_path):
    ema = tensors(layer__weight=(4, 3))
    torch.save({"state_dict": SD, "ema": ema}, tmp_path / "lavie_base.pt")
    assert_same(load_state_dict(tmp_path / "lavie_base.pt", key="ema"), ema)
    assert_same(load_state_dict(tmp_path / "lavie_base.pt"), SD)


def test_dotted_key_walks_nested_dicts(tmp_path):
    torch.save({"module": {"ema": SD, "step": 1}}, tmp_path / "model.pt")
    assert_same(load_state_dict(tmp_path / "model.pt", key="module.ema"), SD)


def test_absent_key_lists_the_choices(tmp_path):
    torch.save({"state_dict": SD, "callbacks": {}, "epoch": 3}, tmp_path / "model.ckpt")
    choices = r"^model\.ckpt has no 'ema' entry; choose key= from: state_dict, callbacks$"
    with pytest.raises(CheckpointError, match=choices):
        load_state_dict(tmp_path / "model.ckpt", key="ema")


def test_no_tensors_and_no_wrapper_asks_for_a_key(tmp_path):
    torch.save({"ema": SD, "model": SD}, tmp_path / "lavie_base.pt")
    with pytest.raises(CheckpointError, match=r"lavie_base\.pt holds no tensors; choose key= from: ema, model"):
        load_state_dict(tmp_path / "lavie_base.pt")


def test_a_non_dict_is_not_a_state_dict(tmp_path):
    torch.save([torch.ones(2)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match=r"list\.pt holds a list, not a state dict"):
        load_state_dict(tmp_path / "list.pt")


# --- shards and folders ------------------------------------------------------------------------------

def write_sharded(folder, suffix):
    first, second = f"model-00001-of-00002{suffix}", f"model-00002-of-00002{suffix}"
    halves = {first: {"layer.weight": SD["layer.weight"]},
              second: {"layer.bias": SD["layer.bias"], "norm.weight": SD["norm.weight"]}}
    for shard, part in halves.items():
        save_file(part, str(folder / shard)) if suffix == ".safetensors" else torch.save(part, folder / shard)
    index = folder / f"model{suffix}.index.json"
    weight_map = {key: shard for shard, part in halves.items() for key in part}
    index.write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    return index


@pytest.mark.parametrize("suffix", [".bin", ".safetensors"])
def test_sharded_round_trip_from_index_and_folder(tmp_path, suffix):
    index = write_sharded(tmp_path, suffix)
    assert load_state_dict(index).keys() == SD.keys()
    loaded = load_state_dict(tmp_path)
    for key in SD:
        assert torch.equal(loaded[key], SD[key])


def test_missing_shard_is_named(tmp_path):
    index = write_sharded(tmp_path, ".bin")
    (tmp_path / "model-00002-of-00002.bin").unlink()
    with pytest.raises(CheckpointError, match=r"model\.bin\.index\.json lists 1 shard missing from .*: "
                                              r"model-00002-of-00002\.bin; download them"):
        load_state_dict(index)


def test_index_without_weight_map(tmp_path):
    (tmp_path / "model.safetensors.index.json").write_text('{"metadata": {}}')
    with pytest.raises(CheckpointError, match="has no weight_map"):
        load_state_dict(tmp_path / "model.safetensors.index.json")


def test_folder_with_one_file_loads_it(tmp_path):
    torch.save(SD, tmp_path / "model.ckpt")
    (tmp_path / "config.yaml").write_text("model: {}")
    assert_same(load_state_dict(tmp_path), SD)


def test_folder_without_checkpoint_and_broken_index(tmp_path):
    with pytest.raises(CheckpointError, match=r"holds no checkpoint \(\.safetensors, \.ckpt"):
        load_state_dict(tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text('{"weight_map": ')
    with pytest.raises(CheckpointError, match=r"^model\.safetensors\.index\.json is not a valid shard index \(.+\); "):
        load_state_dict(tmp_path)


def test_a_dict_without_tensors_or_nested_dicts(tmp_path):
    torch.save({"epoch": 3}, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match=r"^model\.pt holds no tensors; it has no nested dicts for key= to pick$"):
        load_state_dict(tmp_path / "model.pt")


def test_folder_with_several_checkpoints_asks_which(tmp_path):
    torch.save(SD, tmp_path / "a.pt")
    save_file(SD, str(tmp_path / "b.safetensors"))
    with pytest.raises(CheckpointError, match=r"holds several checkpoints \(a\.pt, b\.safetensors\); pass the one"):
        load_state_dict(tmp_path)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(CheckpointError, match=r"checkpoint not found: .*nothing\.ckpt"):
        load_state_dict(tmp_path / "nothing.ckpt")
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"model\.onnx is not a checkpoint"):
        load_state_dict(tmp_path / "model.onnx")


# --- damaged and unsafe files ------------------------------------------------------------------------

@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_truncated_pickle_is_damaged(tmp_path, zip_format):
    path = tmp_path / "model.ckpt"
    torch.save(SD, path, _use_new_zipfile_serialization=zip_format)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"^model\.ckpt is truncated or damaged \(.+\); download it again$"):
        load_state_dict(path)


def test_truncated_safetensors_is_damaged(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file(SD, str(path))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match=r"model\.safetensors is truncated .*download it again"):
        load_state_dict(path)


@pytest.mark.parametrize("content", [NOISE, b"", b"PK\x03\x04" + NOISE],
                         ids=["random", "empty", "zip-header"])
def test_garbage_pickle_is_damaged_not_refused(tmp_path, content):
    (tmp_path / "model.pt").write_bytes(content)
    with pytest.raises(CheckpointError, match=r"^model\.pt is truncated or damaged \(.+\); download it again$"):
        load_state_dict(tmp_path / "model.pt")


def test_bomb_is_a_real_payload(tmp_path):
    """The control for the test below: plain unpickling does run it."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Bomb(marker)))
    assert marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 5")
@pytest.mark.parametrize("writer", ["zip", "legacy", "pickle5"])
def test_pickle_bomb_is_refused_without_running(tmp_path, writer):
    marker, path = tmp_path / "ran", tmp_path / "model.ckpt"
    payload = {"state_dict": SD, "hyper_parameters": Bomb(marker)}
    if writer == "pickle5":
        path.write_bytes(pickle.dumps(payload, protocol=5))
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=writer == "zip")
    with pytest.raises(CheckpointError) as caught:
        load_state_dict(path)
    message = str(caught.value)
    assert message.startswith("model.ckpt holds objects other than tensors (")
    assert f"{os.system.__module__}.system" in message
    assert "weights_only" in message and ".safetensors" in message and "\n" not in message
    assert not marker.exists()


def test_checkpoint_errors_are_model_folder_errors():
    assert issubclass(CheckpointMismatchError, CheckpointError)
    assert issubclass(CheckpointError, ModelFolderError)


# --- renaming ----------------------------------------------------------------------------------------

def test_rename_rules_apply_in_order_to_every_key():
    sd = tensors(input_blocks__1__0__in_layers__0__weight=(2,), out__0__bias=(2,), time_embed__0__weight=(2,))
    rules = [(r"^input_blocks\.(\d+)\.0\.", r"down.\1.resnet."), (r"in_layers\.0", "norm1"),
             (r"^down\.", "unet.down.")]
    renamed = rename_keys(sd, rules)
    assert list(renamed) == ["unet.down.1.resnet.norm1.weight", "out.0.bias", "time_embed.0.weight"]
    assert renamed["out.0.bias"] is sd["out.0.bias"]


def test_rename_collision_is_an_error():
    with pytest.raises(CheckpointError, match=r"gives 'a\.weight' and 'b\.weight' the same name 'x\.weight'"):
        rename_keys(tensors(a__weight=(1,), b__weight=(1,)), [(r"^[ab]\.", "x.")])


def test_strip_prefix_keeps_other_keys():
    sd = tensors(module__a=(1,), b=(1,), c__module__d=(1,))
    assert list(strip_prefix(sd, "module.")) == ["a", "b", "c.module.d"]


def test_select_prefix_takes_the_unet():
    sd = tensors(model__diffusion_model__conv_in__weight=(1,), first_stage_model__x=(1,), betas=(3,))
    assert list(select_prefix(sd, "model.diffusion_model.")) == ["conv_in.weight"]
    with pytest.raises(CheckpointError, match=r"no key starts with 'cond\.'; keys look like model\.diffusion"):
        select_prefix(sd, "cond.")


# --- loading into modules ----------------------------------------------------------------------------

def test_fitting_state_dict_is_copied():
    source, target = Net(), Net()
    report = load_into(target, source.state_dict())
    assert report.ok and report.summary() == "every key fits"
    assert torch.equal(target.layer.weight, source.layer.weight)


def test_wrong_model_gives_counts_and_first_names():
    other = torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(4)])  # 8 keys: 0.weight … 3.bias
    target = Net()
    before = target.layer.weight.clone()
    with pytest.raises(CheckpointMismatchError) as caught:
        load_into(target, other.state_dict(), source="model.ckpt", target="VideoCrafter2's UNet")
    assert str(caught.value) == (
        "model.ckpt does not fit VideoCrafter2's UNet: "
        "4 missing keys (layer.weight, layer.bias, norm.weight, norm.bias), "
        "8 unexpected keys (0.weight, 0.bias, 1.weight, 1.bias, 2.weight, …)")
    assert torch.equal(target.layer.weight, before)  # nothing copied before the error


def test_shape_mismatch_is_caught_before_torch():
    wide = Net(width=8).state_dict()
    with pytest.raises(CheckpointMismatchError,
                       match=r"^the checkpoint does not fit Net: 4 shape mismatches "
                             r"\(layer\.weight: checkpoint \[8, 3\] vs model \[4, 3\], layer\.bias: .*\)$"):
        load_into(Net(), wide)


def test_non_strict_copies_what_fits_and_reports_the_rest():
    target, source = Net(), Net()
    before = target.norm.weight.clone()
    sd = dict(source.state_dict(), **{"extra.weight": torch.ones(1), "norm.weight": torch.ones(5)})
    del sd["norm.bias"]
    report = load_into(target, sd, strict=False)
    assert (report.missing, report.unexpected) == (["norm.bias"], ["extra.weight"])
    assert report.mismatched == [("norm.weight", (5,), (4,))]
    assert not report.ok
    assert torch.equal(target.layer.weight, source.layer.weight)
    assert torch.equal(target.norm.weight, before)


def test_ignored_keys_are_not_unexpected_or_missing():
    target, source = Net(), Net()
    sd = dict(source.state_dict(), **{"layers.0.rotary_emb.inv_freq": torch.ones(2)})
    del sd["norm.bias"]
    report = load_into(target, sd, ignore=[r"\.rotary_emb\.inv_freq$", r"^norm\.bias$"])
    assert report.ok
    assert report.ignored == ["norm.bias", "layers.0.rotary_emb.inv_freq"]
    assert report.unexpected == [] and report.missing == []


def test_assign_keeps_the_file_tensors_on_a_meta_module():
    with torch.device("meta"):
        target = Net()
    sd = {k: v.to(torch.float64) for k, v in Net().state_dict().items()}
    load_into(target, sd, assign=True)
    assert target.layer.weight.device.type == "cpu"
    assert target.layer.weight.dtype == torch.float64
    assert torch.equal(target.layer.weight, sd["layer.weight"])
