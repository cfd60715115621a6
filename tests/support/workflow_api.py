"""Turn a workflow saved by the ComfyUI frontend (the litegraph "UI" format, version 0.4) into the API
format that POST /prompt takes, the way the frontend's own graphToPrompt does for the cases our example
workflows use. Checked against ComfyUI frontend 1.32.9 (core 0.3.75) and 1.49.6 (core 0.33).

How the frontend lays out ``widgets_values`` (one entry per widget, in widget order):

* widgets are created for the node's widget inputs in ``input_order`` (required, then optional);
  socket-only inputs (custom types such as PHYPROMPT_REFINER, ``*``, or anything with ``forceInput``)
  have no widget and take no value;
* an INT input with ``control_after_generate`` (or, when the option is absent, one named ``seed`` or
  ``noise_seed``) is followed by its "control after generate" widget: two values;
* a COMBO input with ``control_after_generate`` also gets a "control_filter_list" widget: three values;
* a V3 dynamic combo (``COMFY_DYNAMICCOMBO_V3``, e.g. SaveVideo's ``format`` since 0.33) is a combo whose
  chosen option brings its own inputs: their widgets come right after it (required, then optional, each
  nested the same way) and are named ``<combo>.<input>``, which is also their key in the API format;
* a widget the saved workflow has no value for (a core node gained it after the workflow was saved, such
  as CreateVideo's ``bit_depth`` in 0.33) keeps its default, as when the frontend loads the workflow;
* a widget input that has a link keeps its (ignored) value in ``widgets_values``; the link wins;
* upload buttons (LoadImage's "upload") and previews come after all input widgets, so a trailing extra
  value is harmless.

Not handled: subgraphs, group nodes, extension widgets that add extra values in the middle of a node.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO", DYNAMIC_COMBO}
# what a widget without a "default" starts with in the frontend (a combo: its first option)
_EMPTY = {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}
# nodes that only exist in the frontend: never sent to the server
FRONTEND_ONLY = {"Note", "MarkdownNote", "PrimitiveNode", "Reroute"}
MUTED, BYPASSED = 2, 4


def _input_specs(inputs: dict, order: dict | None = None) -> list[tuple[str, str, dict]]:
    """(name, type, options) of every required and optional input, in the frontend's order."""
    specs = []
    for section in ("required", "optional"):
        section_inputs = inputs.get(section) or {}
        for name in (order or {}).get(section, list(section_inputs)):
            spec = section_inputs[name]
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if isinstance(spec[0], list):  # the V1 combo: its options in place of a type
                kind, options = "COMBO", options | {"options": spec[0]}
            else:
                kind = spec[0]
            specs.append((name, kind, options))
    return specs


def _values_taken(name: str, kind: str, options: dict) -> int:
    """How many widgets_values entries this input's own widget(s) occupy (0: a socket, no widget); a
    dynamic combo's nested widgets come on top."""
    if kind not in WIDGET_TYPES or options.get("forceInput"):
        return 0
    control = options.get("control_after_generate")
    if kind == "INT" and (control if control is not None else name in ("seed", "noise_seed")):
        return 2
    if kind == "COMBO" and control:
        return 3
    return 1


def _default(kind: str, options: dict):
    if "default" in options:
        return options["default"]
    choices = options.get("options") or []
    if kind == DYNAMIC_COMBO:
        return choices[0]["key"] if choices else None
    if kind == "COMBO":
        return choices[0] if choices else None
    return _EMPTY.get(kind)


@dataclass
class Widgets:
    """A UI node's widget values by API input name, and the "control after generate" choices by input."""

    values: dict = field(default_factory=dict)
    controls: dict = field(default_factory=dict)


def widget_values(node: dict, object_info: dict) -> Widgets:
    """The widgets of a UI-format node, as the frontend fills them from ``widgets_values``."""
    info = object_info[node["type"]]
    saved = node.get("widgets_values") or []
    widgets = Widgets()
    if isinstance(saved, dict):  # some extensions save widgets by name
        for name, kind, options in _input_specs(info.get("input", {}), info.get("input_order")):
            if _values_taken(name, kind, options) and name in saved:
                widgets.values[name] = saved[name]
        return widgets

    def fill(specs, position: int, prefix: str) -> int:
        for name, kind, options in specs:
            taken = _values_taken(name, kind, options)
            if not taken:
                continue
            key = prefix + name
            widgets.values[key] = saved[position] if position < len(saved) else _default(kind, options)
            if taken > 1 and position + 1 < len(saved):
                widgets.controls[key] = saved[position + 1]
            position += taken
            if kind == DYNAMIC_COMBO:
                chosen = next((o for o in options.get("options", []) if o["key"] == widgets.values[key]), None)
                if chosen is not None:
                    position = fill(_input_specs(chosen.get("inputs", {})), position, key + ".")
        return position

    fill(_input_specs(info.get("input", {}), info.get("input_order")), 0, "")
    return widgets


def _links(workflow: dict) -> dict[int, tuple[int, int, str]]:
    """link id -> (origin node id, origin slot, type); links are lists (0.4) or dicts (schema 1)."""
    table = {}
    for link in workflow.get("links", []):
        if isinstance(link, dict):
            table[link["id"]] = (link["origin_id"], link["origin_slot"], link.get("type", "*"))
        else:
            link_id, origin, slot, _target, _target_slot, kind = link[:6]
            table[link_id] = (origin, slot, kind)
    return table


def _types_match(a: str, b: str) -> bool:
    a_set, b_set = set(str(a).split(",")), set(str(b).split(","))
    return "*" in a_set or "*" in b_set or bool(a_set & b_set)


def ui_to_api(workflow: dict, object_info: dict) -> dict:
    """The API-format prompt ({node id: {"class_type", "inputs"}}) for a UI-format workflow.

    Muted (mode 2) nodes are left out, and inputs fed by them are dropped. Bypassed (mode 4) nodes are
    left out and passed through: an input fed by a bypassed node is fed by whatever feeds that node's
    input of the same type (the same slot first), as in the frontend. Frontend-only nodes (notes,
    primitives, reroutes) are left out; a primitive's value is already in the target's widgets_values.
    A node whose class the server does not have raises ValueError.
    """
    nodes = {node["id"]: node for node in workflow["nodes"]}
    links = _links(workflow)

    def resolve(link_id, seen=()):
        """[origin id, slot] for a link, following reroutes and bypassed nodes; None when nothing feeds it."""
        if link_id is None or link_id not in links or link_id in seen:
            return None
        origin_id, slot, kind = links[link_id]
        origin = nodes.get(origin_id)
        if origin is None or origin.get("mode", 0) == MUTED:
            return None
        if origin["type"] == "Reroute":
            inputs = origin.get("inputs") or [{}]
            return resolve(inputs[0].get("link"), (*seen, link_id))
        if origin["type"] in FRONTEND_ONLY:
            return None
        if origin.get("mode", 0) == BYPASSED:
            inputs = origin.get("inputs") or []
            order = ([inputs[slot]] if slot < len(inputs) else []) + [i for n, i in enumerate(inputs) if n != slot]
            for candidate in order:
                if candidate.get("link") is not None and _types_match(candidate.get("type", "*"), kind):
                    return resolve(candidate["link"], (*seen, link_id))
            return None
        return [str(origin_id), slot]

    prompt = {}
    for node_id, node in nodes.items():
        kind = node["type"]
        if node.get("mode", 0) in (MUTED, BYPASSED) or kind in FRONTEND_ONLY:
            continue
        if kind not in object_info:
            raise ValueError(f"node {node_id}: the server has no node class {kind!r}")
        inputs = widget_values(node, object_info).values
        for socket in node.get("inputs") or []:
            name = socket.get("widget", {}).get("name") or socket["name"]
            source = resolve(socket.get("link"))
            if source is not None:
                inputs[name] = source
            elif socket.get("link") is not None and not socket.get("widget"):
                inputs.pop(name, None)  # fed by a muted node: the input is left unset
        prompt[str(node_id)] = {"class_type": kind, "inputs": inputs}
    return prompt
