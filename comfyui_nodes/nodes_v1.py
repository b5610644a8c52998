"""The V1 fallback: classic node classes (INPUT_TYPES, RETURN_TYPES, FUNCTION) for ComfyUI versions without
`comfy_api.latest`. Generated from schema.NODES, so they take the same inputs and run the same code as the
V3 nodes. Importing this module imports nothing from ComfyUI."""

from __future__ import annotations

from typing import Any

from . import files, schema


def v1_input(spec: schema.In) -> tuple[Any, ...]:
    """One input in V1's (TYPE, options) form; a combo's TYPE is its list of choices."""
    opts: dict[str, Any] = {}
    if spec.tooltip:
        opts["tooltip"] = spec.tooltip
    if spec.type == "COMBO":
        if spec.default is not None:
            opts["default"] = spec.default
        return spec.choices(), opts
    if spec.default is not None:
        opts["default"] = spec.default
    for key in ("min", "max", "step"):
        if getattr(spec, key) is not None:
            opts[key] = getattr(spec, key)
    if spec.type == "STRING":
        opts["multiline"] = False
    return spec.type, opts


def v1_input_types(node: schema.NodeDef) -> dict[str, dict[str, tuple[Any, ...]]]:
    types: dict[str, dict[str, tuple[Any, ...]]] = {"required": {}}
    for spec in node.inputs:
        types.setdefault("optional" if spec.optional else "required", {})[spec.id] = v1_input(spec)
    return types


def _make(node: schema.NodeDef) -> type:
    """A V1 class for one node definition."""

    def INPUT_TYPES(cls: type) -> dict[str, dict[str, tuple[Any, ...]]]:  # noqa: N802 (ComfyUI's name)
        return v1_input_types(node)

    def run(self: Any, **kwargs: Any) -> dict[str, Any]:
        result, ui = node.run(**kwargs)
        out: dict[str, Any] = {"result": result}
        if ui:
            out["ui"] = ui
        return out

    attrs: dict[str, Any] = {
        "__doc__": node.description,
        "INPUT_TYPES": classmethod(INPUT_TYPES),
        "RETURN_TYPES": tuple(o.type for o in node.outputs),
        "RETURN_NAMES": tuple(o.name for o in node.outputs),
        "OUTPUT_TOOLTIPS": tuple(o.tooltip for o in node.outputs),
        "FUNCTION": "run",
        "CATEGORY": schema.CATEGORY,
        "DESCRIPTION": node.description,
        "OUTPUT_NODE": node.output_node,
        "run": run,
    }
    if node.node_id == "SODECLoad":
        attrs["VALIDATE_INPUTS"] = classmethod(lambda cls, sdc_file: schema.validate_load(sdc_file))
        attrs["IS_CHANGED"] = classmethod(lambda cls, sdc_file: files.file_fingerprint(sdc_file))
    return type(node.node_id, (), attrs)


NODE_CLASS_MAPPINGS: dict[str, type] = {node_id: _make(node) for node_id, node in schema.NODES.items()}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {node_id: node.display_name for node_id, node in schema.NODES.items()}
