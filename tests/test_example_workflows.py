"""The example workflow ComfyUI's template browser offers for this node pack, checked without ComfyUI.

ComfyUI (app/custom_node_manager.py) lists `<custom node>/example_workflows/*.json` (also `example/`,
`examples/`, `workflow/`, `workflows/`) at GET /api/workflow_templates, serves the folder under
/api/workflow_templates/<custom node>/, and its front end shows each file under its stem with `<stem>.jpg` as
the thumbnail. The file is in the front end's own (LiteGraph, UI) format, with positions, so that loading it
gives a readable graph; comfyui_nodes/workflows/sodec_roundtrip_api.json is the same graph in API format (what
/prompt takes), and the last test keeps the two from drifting apart.
"""

from __future__ import annotations

import json
import sys
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest

from comfyui_nodes import schema

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "example_workflows"
UI_WORKFLOW = EXAMPLES / "sodec_compress_and_decode.json"
API_WORKFLOW = REPO / "comfyui_nodes" / "workflows" / "sodec_roundtrip_api.json"
# what custom_node_manager.py globs for, `<custom node>/<folder>/*.json`
COMFY_EXAMPLE_FOLDERS = ("example_workflows", "example", "examples", "workflow", "workflows")
TITLE_HEIGHT = 30  # LiteGraph.NODE_TITLE_HEIGHT: the title bar is drawn above a node's pos
WIDGET_TYPES = ("COMBO", "INT", "FLOAT", "STRING")  # inputs the front end shows as widgets, not sockets
MAX_THUMBNAIL_BYTES = 100 * 1024

# ComfyUI core nodes the example may use, with the sockets and widgets they declare (/object_info): widgets
# in the order the front end builds them; LoadImage's `upload` button is saved in widgets_values but never
# sent to /prompt.
CORE_NODES: dict[str, dict[str, Any]] = {
    "LoadImage": {"inputs": {}, "widgets": ("image", "upload"), "api_widgets": ("image",),
                  "outputs": (("IMAGE", "IMAGE"), ("MASK", "MASK"))},
    "SaveImage": {"inputs": {"images": "IMAGE"}, "widgets": ("filename_prefix",),
                  "api_widgets": ("filename_prefix",), "outputs": ()},
    "PreviewImage": {"inputs": {"images": "IMAGE"}, "widgets": (), "api_widgets": (), "outputs": ()},
}
VIRTUAL_NODES = ("MarkdownNote", "Note")  # front-end only notes: never sent to /prompt


def load_ui() -> dict[str, Any]:
    return json.loads(UI_WORKFLOW.read_text(encoding="utf-8"))


def declared(node_type: str) -> dict[str, Any]:
    """Sockets and widgets of a node type, ours read from schema.NODES (as the V1 and V3 nodes are)."""
    if node_type in CORE_NODES:
        return CORE_NODES[node_type]
    if node_type in VIRTUAL_NODES:
        return {"inputs": {}, "widgets": ("text",), "api_widgets": (), "outputs": ()}
    node = schema.NODES[node_type]
    widgets = tuple(i.id for i in node.inputs if i.type in WIDGET_TYPES)
    return {
        "inputs": {i.id: i.type for i in node.inputs if i.type not in WIDGET_TYPES},
        "required": tuple(i.id for i in node.inputs if i.type not in WIDGET_TYPES and not i.optional),
        "widgets": widgets,
        "api_widgets": widgets,
        "specs": {i.id: i for i in node.inputs},
        "outputs": tuple((o.name, o.type) for o in node.outputs),
    }


def rect(node: dict[str, Any]) -> tuple[float, float, float, float]:
    """x0, y0, x1, y1 of the node as drawn, title bar included (collapsed nodes are not expected)."""
    (x, y), (w, h) = node["pos"], node["size"]
    return x, y - TITLE_HEIGHT, x + w, y + h


def ui_to_api(ui: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What the front end posts to /prompt for this graph (its graphToPrompt, for the node types used here):
    notes and muted/bypassed nodes left out, widget values by name, links as [origin id, origin slot]."""
    links = {link[0]: link for link in ui["links"]}
    prompt: dict[str, dict[str, Any]] = {}
    for node in ui["nodes"]:
        if node["type"] in VIRTUAL_NODES or node.get("mode", 0) != 0:
            continue
        spec = declared(node["type"])
        values = dict(zip(spec["widgets"], node.get("widgets_values", []), strict=True))
        inputs: dict[str, Any] = {name: values[name] for name in spec["api_widgets"]}
        for slot in node.get("inputs", []):
            if slot.get("link") is not None:
                origin = links[slot["link"]]
                inputs[slot["name"]] = [str(origin[1]), origin[2]]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs,
                                   "_meta": {"title": node.get("title", node["type"])}}
    return prompt


def test_the_examples_are_what_comfyui_lists_for_this_pack() -> None:
    """The repository root is the custom node (its __init__.py loads comfyui_nodes), so ComfyUI globs its
    example folders; exactly the UI workflow is listed, with a small .jpg thumbnail of the same stem."""
    assert (REPO / "__init__.py").is_file()
    listed = sorted(p for folder in COMFY_EXAMPLE_FOLDERS for p in (REPO / folder).glob("*.json"))
    assert listed == [UI_WORKFLOW]
    for image in EXAMPLES.iterdir():
        if image.suffix != ".json":
            assert image.suffix == ".jpg", f"{image.name}: the template browser asks for <stem>.jpg only"
            assert image.with_suffix(".json").is_file(), f"{image.name}: no workflow of that name"
            assert image.stat().st_size <= MAX_THUMBNAIL_BYTES
            assert image.read_bytes()[:3] == b"\xff\xd8\xff", f"{image.name} is not a JPEG"
    assert UI_WORKFLOW.with_suffix(".jpg").is_file(), "the template browser shows <stem>.jpg as the thumbnail"


def test_ui_format() -> None:
    ui = load_ui()
    for key in ("last_node_id", "last_link_id", "nodes", "links", "groups", "config", "extra", "version"):
        assert key in ui, f"UI-format workflows have {key!r}"
    ids = [n["id"] for n in ui["nodes"]]
    assert len(set(ids)) == len(ids), "node ids repeat"
    link_ids = [link[0] for link in ui["links"]]
    assert len(set(link_ids)) == len(link_ids), "link ids repeat"
    assert ui["last_node_id"] >= max(ids) and ui["last_link_id"] >= max(link_ids, default=0)
    for node in ui["nodes"]:
        for key in ("id", "type", "pos", "size", "flags", "order", "mode", "inputs", "outputs", "properties"):
            assert key in node, f"node {node.get('id')} has no {key!r}"
        assert len(node["pos"]) == 2 and len(node["size"]) == 2
        assert node["mode"] == 0, f"node {node['id']} is muted or bypassed"
        assert not node["flags"].get("collapsed"), f"node {node['id']} is collapsed"


def test_every_node_type_is_ours_or_allowed() -> None:
    for node in load_ui()["nodes"]:
        t = node["type"]
        assert t in schema.NODES or t in CORE_NODES or t in VIRTUAL_NODES, f"node {node['id']}: unknown type {t!r}"


def test_links_join_existing_slots_of_the_declared_types() -> None:
    ui = load_ui()
    nodes = {n["id"]: n for n in ui["nodes"]}
    seen: set[int] = set()
    for link_id, origin_id, origin_slot, target_id, target_slot, link_type in ui["links"]:
        assert origin_id in nodes and target_id in nodes, f"link {link_id}: no such node"
        origin, target = nodes[origin_id], nodes[target_id]
        assert 0 <= origin_slot < len(origin["outputs"]), f"link {link_id}: node {origin_id} lacks output {origin_slot}"
        assert 0 <= target_slot < len(target["inputs"]), f"link {link_id}: node {target_id} lacks input {target_slot}"
        out, inp = origin["outputs"][origin_slot], target["inputs"][target_slot]
        assert link_id in (out.get("links") or []), f"link {link_id}: not among node {origin_id}'s output links"
        assert inp.get("link") == link_id, f"link {link_id}: node {target_id}'s input holds {inp.get('link')}"
        # against what the nodes declare: the origin's output slot, the target's socket input by name
        name, declared_type = declared(origin["type"])["outputs"][origin_slot]
        assert (out["name"], out["type"]) == (name, declared_type), f"link {link_id}: output {out} is not {name}"
        wanted = declared(target["type"])["inputs"].get(inp["name"])
        assert wanted is not None, f"link {link_id}: {target['type']} has no socket input {inp['name']!r}"
        assert inp["type"] == wanted, f"link {link_id}: input {inp['name']} is {inp['type']}, declared {wanted}"
        assert link_type == declared_type == wanted, f"link {link_id}: {link_type} from {declared_type} to {wanted}"
        seen.add(link_id)
    for node in ui["nodes"]:  # nothing points at a link the list lacks, and our required sockets are joined
        for inp in node["inputs"]:
            assert inp.get("link") is None or inp["link"] in seen, f"node {node['id']}: dangling {inp}"
        for out in node["outputs"]:
            assert set(out.get("links") or []) <= seen, f"node {node['id']}: dangling {out}"
        if node["type"] in schema.NODES:
            joined = {i["name"] for i in node["inputs"] if i.get("link") is not None}
            missing = set(declared(node["type"])["required"]) - joined
            assert not missing, f"node {node['id']} ({node['type']}): {sorted(missing)} not connected"


def test_no_node_covers_another_and_the_graph_runs_left_to_right() -> None:
    nodes = load_ui()["nodes"]
    for a, b in combinations(nodes, 2):
        ax0, ay0, ax1, ay1 = rect(a)
        bx0, by0, bx1, by1 = rect(b)
        overlap = ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1
        assert not overlap, f"node {a['id']} ({a['type']}) and node {b['id']} ({b['type']}) overlap"
    by_id = {n["id"]: n for n in nodes}
    for link_id, origin_id, _, target_id, _, _ in load_ui()["links"]:
        assert rect(by_id[origin_id])[2] < rect(by_id[target_id])[0], f"link {link_id} runs right to left"


def test_widget_values_match_the_declared_widgets() -> None:
    for node in load_ui()["nodes"]:
        spec = declared(node["type"])
        values = node.get("widgets_values", [])
        assert len(values) == len(spec["widgets"]), \
            f"node {node['id']} ({node['type']}): {len(values)} widget values for widgets {spec['widgets']}"
        if node["type"] not in schema.NODES:
            continue
        # the front end saves each widget input as an input slot too, in the node's widget order
        assert tuple(i["name"] for i in node["inputs"] if "widget" in i) == spec["widgets"]
        for name, value in zip(spec["widgets"], values, strict=True):
            s = spec["specs"][name]
            if s.type == "COMBO":
                assert value in s.choices(), f"node {node['id']}: {name}={value!r} is not one of {s.choices()}"
            elif s.type in ("INT", "FLOAT"):
                assert isinstance(value, int | float) and not isinstance(value, bool)
                assert s.type == "FLOAT" or float(value).is_integer(), f"node {node['id']}: {name}={value!r}"
                assert (s.min is None or value >= s.min) and (s.max is None or value <= s.max), \
                    f"node {node['id']}: {name}={value!r} outside [{s.min}, {s.max}]"
            else:
                assert isinstance(value, str), f"node {node['id']}: {name}={value!r}"


def test_the_example_keeps_the_nodes_defaults() -> None:
    """The example shows what a new node gives (decode_path auto: the decoder the model has), so that no
    widget in it claims a decoder or a setting that the bundled model does not use."""
    for node in load_ui()["nodes"]:
        if node["type"] not in schema.NODES:
            continue
        spec = declared(node["type"])
        for name, value in zip(spec["widgets"], node["widgets_values"], strict=True):
            default = spec["specs"][name].default
            assert default is None or value == default, f"node {node['id']}: {name}={value!r}, default {default!r}"


def test_the_ui_workflow_is_the_api_workflow() -> None:
    """Same node ids and types, links and widget values (and titles) as the API-format workflow."""
    api = json.loads(API_WORKFLOW.read_text(encoding="utf-8"))
    converted = ui_to_api(load_ui())
    assert converted.keys() == api.keys()
    for node_id, node in api.items():
        assert converted[node_id]["class_type"] == node["class_type"], f"node {node_id}"
        assert converted[node_id]["inputs"] == node["inputs"], f"node {node_id} ({node['class_type']})"
        assert converted[node_id]["_meta"]["title"] == node.get("_meta", {}).get("title", node["class_type"])


@pytest.mark.parametrize("case", ["overlap", "widgets", "link_type", "api"])
def test_the_checks_catch_a_broken_workflow(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each check fails on a workflow broken in the way it is there to catch."""
    ui = load_ui()
    by_type = {n["type"]: n for n in ui["nodes"]}
    check, message = {
        "overlap": (test_no_node_covers_another_and_the_graph_runs_left_to_right, "overlap"),
        "widgets": (test_widget_values_match_the_declared_widgets, "widget values"),
        "link_type": (test_links_join_existing_slots_of_the_declared_types, "MODEL from SODEC_MODEL"),
        "api": (test_the_ui_workflow_is_the_api_workflow, "SODECEncode"),
    }[case]
    if case == "overlap":  # the decoder's title bar under the encoder's bottom edge
        enc, dec = by_type["SODECEncode"], by_type["SODECDecode"]
        dec["pos"] = [enc["pos"][0] + 20, enc["pos"][1] + enc["size"][1] + TITLE_HEIGHT - 5]
    elif case == "widgets":
        by_type["SODECDecode"]["widgets_values"].pop()
    elif case == "link_type":
        next(link for link in ui["links"] if link[5] == "SODEC_MODEL")[5] = "MODEL"
    else:
        by_type["SODECEncode"]["widgets_values"][0] = 50
    monkeypatch.setattr(sys.modules[__name__], "load_ui", lambda: ui)
    with pytest.raises(AssertionError, match=message):
        check()
