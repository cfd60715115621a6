"""The tests' UI → API conversion (tests/support/workflow_api.py) follows the frontend on both cores: checked
here on node definitions shaped like core 0.33's, without a server (the ComfyUI tests run it on real ones)."""

from support.workflow_api import ui_to_api, widget_values

CODEC = ["COMFY_DYNAMICCOMBO_V3", {"options": [
    {"key": "auto", "inputs": {"required": {}}},
    {"key": "h264", "inputs": {"required": {}, "optional": {"encoding": ["COMFY_DYNAMICCOMBO_V3", {"options": [
        {"key": "auto", "inputs": {"required": {}}},
        {"key": "re-encode", "inputs": {"required": {
            "crf": ["FLOAT", {"default": 23.0}],
            "color_space": ["COMBO", {"default": "auto", "options": ["auto", "sRGB"]}]}}},
    ]}]}}},
]}]
# core 0.33's SaveVideo: a dynamic `format` whose options bring a nested dynamic `codec`, and the old
# top-level `codec` kept as a hidden optional input for workflows saved before
OBJECT_INFO = {
    "SaveVideo": {
        "input": {
            "required": {
                "video": ["VIDEO", {}],
                "filename_prefix": ["STRING", {"default": "video/ComfyUI"}],
                "format": ["COMFY_DYNAMICCOMBO_V3", {"options": [
                    {"key": "auto", "inputs": {"required": {"codec": CODEC}}},
                    {"key": "webm", "inputs": {"required": {}}},
                ]}],
            },
            "optional": {"codec": [CODEC[0], CODEC[1] | {"hidden": True}]},
        },
        "input_order": {"required": ["video", "filename_prefix", "format"], "optional": ["codec"]},
    },
    "CreateVideo": {  # bit_depth is newer than workflows saved on 0.3.75
        "input": {"required": {"images": ["IMAGE", {}], "fps": ["FLOAT", {"default": 30.0}]},
                  "optional": {"audio": ["AUDIO", {}], "bit_depth": ["INT", {"default": 8, "min": 8, "max": 10}]}},
        "input_order": {"required": ["images", "fps"], "optional": ["audio", "bit_depth"]},
    },
    "KSampler": {
        "input": {"required": {
            "seed": ["INT", {"default": 0, "control_after_generate": True}],
            "steps": ["INT", {"default": 20}],
            "sampler_name": [["euler", "ddim"], {}],
            "scheduler": ["COMBO", {"options": ["simple", "normal"]}],
        }},
    },
}


def node(node_type, values, node_id=1, inputs=()):
    return {"id": node_id, "type": node_type, "mode": 0, "inputs": list(inputs), "widgets_values": values}


def test_a_dynamic_combo_takes_its_nested_widgets_right_after_it():
    widgets = widget_values(node("SaveVideo", ["out/x", "auto", "h264", "re-encode", 18.0, "sRGB", "auto"]),
                            OBJECT_INFO)
    assert widgets.values == {
        "filename_prefix": "out/x", "format": "auto", "format.codec": "h264", "format.codec.encoding": "re-encode",
        "format.codec.encoding.crf": 18.0, "format.codec.encoding.color_space": "sRGB", "codec": "auto"}


def test_an_option_without_inputs_takes_no_more_values():
    widgets = widget_values(node("SaveVideo", ["out/x", "webm", "h264"]), OBJECT_INFO)
    # ... and a nested widget the workflow has no value for gets its default (a dynamic combo: its first option)
    assert widgets.values == {"filename_prefix": "out/x", "format": "webm", "codec": "h264", "codec.encoding": "auto"}


def test_widgets_newer_than_the_saved_workflow_keep_their_defaults():
    # SaveVideo as 0.3.75 saved it (format and codec were plain combos); CreateVideo without bit_depth
    assert widget_values(node("SaveVideo", ["out/x", "auto", "auto"]), OBJECT_INFO).values == {
        "filename_prefix": "out/x", "format": "auto", "format.codec": "auto", "codec": "auto"}
    assert widget_values(node("CreateVideo", [8]), OBJECT_INFO).values == {"fps": 8, "bit_depth": 8}
    assert widget_values(node("SaveVideo", []), OBJECT_INFO).values == {
        "filename_prefix": "video/ComfyUI", "format": "auto", "format.codec": "auto", "codec": "auto"}


def test_control_after_generate_takes_a_value_after_the_seed():
    widgets = widget_values(node("KSampler", [7, "fixed", 30, "ddim", "normal"]), OBJECT_INFO)
    assert widgets.values == {"seed": 7, "steps": 30, "sampler_name": "ddim", "scheduler": "normal"}
    assert widgets.controls == {"seed": "fixed"}
    assert widget_values(node("KSampler", []), OBJECT_INFO).values["sampler_name"] == "euler"  # a combo's first


def test_links_win_over_widget_values():
    workflow = {
        "nodes": [node("KSampler", [1, "fixed", 2, "euler", "simple"], node_id=1),
                  node("CreateVideo", [30.0], node_id=2, inputs=[
                      {"name": "images", "type": "IMAGE", "link": None},
                      {"name": "fps", "type": "FLOAT", "widget": {"name": "fps"}, "link": 5}]),
                  {"id": 3, "type": "PrimitiveNode", "mode": 0, "outputs": [{"links": [5]}]}],
        "links": [[5, 1, 0, 2, 1, "FLOAT"]],
    }
    prompt = ui_to_api(workflow, OBJECT_INFO)
    assert prompt["2"]["inputs"] == {"fps": ["1", 0], "bit_depth": 8}
