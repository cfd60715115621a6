"""The shipped workflows read well: every title and note names the video model of the nodes it sits on, and
each workflow opens at a zoom and position where all of it is on a 1920×1080 screen and its text is legible.

No server needed: the video models come from the backend registry (`phyprompt.video.backend`), so a new
backend is checked without a change here. docs/workflows/*.png are these workflows as core 0.33's frontend
shows them (docs/screenshots.py makes them).
"""

import json
import re
from pathlib import Path

import pytest

from phyprompt.language.targets import TARGETS
from phyprompt.video.backend import backend_info, backend_names

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
NOTES = {"MarkdownNote", "Note"}
REFINE_NODES = ("PhyPromptRefine",)  # PhyPromptRefine, ...RefineList, ...RefineVariants: a `target` widget
PREVIEW = "PreviewAny"

# LiteGraph draws a node's title bar above its `pos`
TITLE_BAR = 30
# What both frontends (1.32.9 on core 0.3.75, 1.49.6 on 0.33) leave of a 1920×1080 window to the canvas: the
# side bar takes 60 px on the left, the tab bar and the toolbar (Run, the workflow's name) 90 px at the top,
# the zoom controls about 40 px at the bottom.
SCREEN = (60, 90, 1920, 1040)
# Below a zoom of 8/14 ≈ 0.57 both frontends draw nodes as grey boxes without text (LiteGraph's level of
# detail: `min_font_size_for_lod` 8 px over the 14 px node text), which is what Fit View gave on the large
# workflows at 0.6. Widget labels and values are 12 px at 100%: at 0.8 they are ~10 px on screen, the
# smallest that still reads comfortably; the shipped ones are at 0.86 to 1.
MIN_SCALE = 0.8
# A text preview on core 0.33 (frontend 1.49.6) spends ~70 px of its height on the input row, the
# preview_mode switch and padding, then shows a 15 px line per line of text (1.32.9 shows more).
PREVIEW_CHROME, PREVIEW_LINE = 70, 15
MIN_PREVIEW_LINES = 8  # the refined prompt and the reasoning: about 60 words visible without scrolling


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def words(text: str, word: str, case_sensitive: bool) -> bool:
    """`word` stands alone in `text` (not inside a longer name: CLIP is not in OpenCLIP or CLIPTextEncode)."""
    pattern = rf"(?<![A-Za-z0-9_]){re.escape(word)}(?![A-Za-z0-9_])"
    return re.search(pattern, text, 0 if case_sensitive else re.IGNORECASE) is not None


def backend_marks() -> dict[str, list[tuple[str, bool]]]:
    """What names each video backend in a title: its display and registry names (any case) and, for a
    backend with a refiner target of its own, the family of that target's text encoder (T5, OpenCLIP, CLIP:
    as written). A backend that writes for another target (e.g. `generic`) has no encoder to name."""
    marks = {}
    for name in backend_names():
        info = backend_info(name)
        marks[name] = [(info.display_name, False), (info.name, False)]
        if info.target == info.name:
            marks[name].append((TARGETS[info.target].text_encoder.split()[0], True))
    return marks


MARKS = backend_marks()


def named_backends(text: str, node_type: str = "", allowed: frozenset = frozenset()) -> set[str]:
    """The backends `text` names other than the `allowed` ones, leaving out a name the node's own type
    carries (CLIP in CLIPTextEncode) and a name one of the allowed backends shares (two CLIP models)."""
    found = set()
    for mark, case in {m for marks in MARKS.values() for m in marks}:
        if not words(text, mark, case) or mark.lower() in node_type.lower():
            continue
        owners = {name for name, marks in MARKS.items() if (mark, case) in marks}
        if not owners & allowed:
            found |= owners
    return found


def own_backends(node: dict) -> set[str]:
    """The backends a node belongs to by its type: a backend's loader and sampler, a refine node by its target."""
    found = set()
    for name in backend_names():
        node_name = backend_info(name).node_name
        if node["type"] in (f"PhyPromptLoad{node_name}", f"PhyPrompt{node_name}Sampler"):
            found.add(name)
    if node["type"].startswith(REFINE_NODES):
        targets = {value for value in node.get("widgets_values") or [] if isinstance(value, str) and value in TARGETS}
        found |= {name for name in backend_names() if backend_info(name).target in targets}
    return found


def neighbours(ui: dict) -> dict[int, set[int]]:
    linked = {node["id"]: set() for node in ui["nodes"]}
    for _link, origin, _slot, target, _target_slot, _kind in ui["links"]:
        linked[origin].add(target)
        linked[target].add(origin)
    return linked


def served_backends(ui: dict) -> dict[int, set[str]]:
    """Each node's backends: its own, else those of the nodes it is linked to, else the workflow's."""
    nodes = {node["id"]: node for node in ui["nodes"]}
    own = {node_id: own_backends(node) for node_id, node in nodes.items()}
    everything = set().union(*own.values())
    linked = neighbours(ui)
    return {node_id: own[node_id] or set().union(*(own[other] for other in linked[node_id])) or everything
            for node_id in nodes}


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_titles_name_the_video_model_of_their_node(workflow):
    ui = load(workflow)
    served = served_backends(ui)
    for node in ui["nodes"]:
        title = node.get("title")
        if not title or node["type"] in NOTES:
            continue
        wrong = named_backends(title, node["type"], frozenset(served[node["id"]]))
        where = f"node {node['id']} ({node['type']}, for {sorted(served[node['id']])})"
        assert not wrong, f"{where}: {title!r} names {sorted(wrong)}"
        if "token" in title.lower():  # a token budget in a title is the budget of its model's text encoder
            limits = {TARGETS[backend_info(name).target].token_limit for name in served[node["id"]]}
            numbers = {int(n) for n in re.findall(r"\d+", title) if int(n) >= 10}
            assert numbers <= limits, f"node {node['id']}: {title!r} gives a budget of {numbers}, not {limits}"


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_notes_describe_the_video_models_of_the_workflow(workflow):
    ui = load(workflow)
    used = set().union(*(own_backends(node) for node in ui["nodes"]))
    rendered = {name for node in ui["nodes"] for name in own_backends(node)
                if not node["type"].startswith(REFINE_NODES)}  # a loader or sampler of the backend
    notes = [node for node in ui["nodes"] if node["type"] in NOTES]
    for note in notes:
        text = "\n".join(v for v in note.get("widgets_values") or [] if isinstance(v, str))
        wrong = named_backends(text, allowed=frozenset(used))
        assert not wrong, f"{workflow.name}: the note names {sorted(wrong)}, the workflow uses {sorted(used)}"
        for name in rendered:
            assert words(text, backend_info(name).display_name, False), f"the note does not name {name}"
    if rendered:
        assert notes, f"{workflow.name} renders with {sorted(rendered)} and has no note saying what it needs"


def test_the_rule_catches_a_title_from_another_workflow():
    """The LaVie workflow once carried the VideoCrafter2 workflow's titles."""
    lavie, videocrafter2 = backend_info("lavie"), backend_info("videocrafter2")
    sampler = {"id": 1, "type": f"PhyPrompt{lavie.node_name}Sampler", "title": "VideoCrafter2 Sampler"}
    preview = {"id": 2, "type": PREVIEW, "title": "Token report (77 OpenCLIP tokens)"}
    ui = {"nodes": [sampler, preview], "links": [[1, 1, 2, 2, 0, "STRING"]]}
    served = served_backends(ui)
    assert served == {1: {"lavie"}, 2: {"lavie"}}
    lavie_only = frozenset({"lavie"})
    assert named_backends(sampler["title"], sampler["type"], lavie_only) == {"videocrafter2"}
    assert named_backends(preview["title"], preview["type"], lavie_only) == {"videocrafter2"}  # OpenCLIP
    assert named_backends("Sampler token report (CLIP tokens / 77)", PREVIEW, lavie_only) == set()
    assert named_backends("CLIP Text Encode (refined prompt)", "CLIPTextEncode") == set()  # the node's own name
    assert named_backends(f"what {videocrafter2.display_name} renders", PREVIEW, lavie_only) == {"videocrafter2"}


def screen_boxes(ui: dict) -> dict[int, tuple[float, float, float, float]]:
    """Each node (title bar included) on screen at the saved view: screen = (graph + offset) × scale."""
    view = ui["extra"]["ds"]
    scale, (ox, oy) = view["scale"], view["offset"]
    boxes = {}
    for node in ui["nodes"]:
        (x, y), (width, height) = node["pos"], node["size"]
        boxes[node["id"]] = ((x + ox) * scale, (y - TITLE_BAR + oy) * scale,
                             (x + width + ox) * scale, (y + height + oy) * scale)
    return boxes


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_the_saved_view_shows_the_whole_workflow_legibly(workflow):
    ui = load(workflow)
    assert ui["extra"]["ds"]["scale"] >= MIN_SCALE, f"saved at {ui['extra']['ds']['scale']:.0%}"
    left, top, right, bottom = SCREEN
    for node_id, (x0, y0, x1, y1) in screen_boxes(ui).items():
        assert left <= x0 and x1 <= right and top <= y0 and y1 <= bottom, \
            f"node {node_id} is at {[round(v) for v in (x0, y0, x1, y1)]}, off the {SCREEN} part of the screen"


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_the_refiners_text_has_room(workflow):
    """The previews of the refined prompt and the reasoning show several lines on core 0.33, whose text
    previews lose a row to their preview_mode switch."""
    ui = load(workflow)
    nodes = {node["id"]: node for node in ui["nodes"]}
    for _link, origin, slot, target, _target_slot, _kind in ui["links"]:
        if nodes[origin]["type"].startswith(REFINE_NODES) and slot < 2 and nodes[target]["type"] == PREVIEW:
            height = nodes[target]["size"][1]
            lines = (height - PREVIEW_CHROME) // PREVIEW_LINE
            assert lines >= MIN_PREVIEW_LINES, f"node {target} ({nodes[target].get('title')}): {lines} lines"
