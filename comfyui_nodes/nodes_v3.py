"""The nodes in ComfyUI's V3 API (`comfy_api.latest`). Imported only where ComfyUI provides that API; the
schemas and the work (each node's run function) come from schema.NODES, shared with the V1 fallback."""

from __future__ import annotations

from typing import Any

from comfy_api.latest import ComfyExtension, io

from sodec_plugin.rates import DEFAULT_EFFORT, DEFAULT_QUALITY

from . import coding, files, model_loading, schema

BITSTREAM = io.Custom(coding.BITSTREAM_TYPE)
MODEL = io.Custom(model_loading.MODEL_TYPE)
_TYPES: dict[str, Any] = {"IMAGE": io.Image, "MASK": io.Mask, "FLOAT": io.Float, coding.BITSTREAM_TYPE: BITSTREAM,
                          model_loading.MODEL_TYPE: MODEL}


def v3_input(spec: schema.In) -> io.Input:
    common: dict[str, Any] = {"tooltip": spec.tooltip or None, "optional": spec.optional}
    if spec.type == "COMBO":
        return io.Combo.Input(spec.id, options=spec.choices(), default=spec.default, **common)
    if spec.type == "INT":
        return io.Int.Input(spec.id, default=spec.default, min=spec.min, max=spec.max, step=spec.step, **common)
    if spec.type == "FLOAT":
        return io.Float.Input(spec.id, default=spec.default, min=spec.min, max=spec.max, step=spec.step, **common)
    if spec.type == "STRING":
        return io.String.Input(spec.id, default=spec.default, **common)
    return _TYPES[spec.type].Input(spec.id, **common)


def v3_schema(node_id: str) -> io.Schema:
    node = schema.NODES[node_id]
    return io.Schema(
        node_id=node.node_id,
        display_name=node.display_name,
        category=schema.CATEGORY,
        description=node.description,
        inputs=[v3_input(s) for s in node.inputs],
        outputs=[_TYPES[o.type].Output(o.name, display_name=o.name, tooltip=o.tooltip or None) for o in node.outputs],
        is_output_node=node.output_node,
    )


def _run(node_id: str, **kwargs: Any) -> io.NodeOutput:
    result, ui = schema.NODES[node_id].run(**kwargs)
    return io.NodeOutput(*result, ui=ui or None)


class SODECModelLoader(io.ComfyNode):
    """Bundled default, models/sodec entry or Hub repo -> SODEC_MODEL."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return v3_schema("SODECModelLoader")

    @classmethod
    def execute(cls, model_name: str, hub_repo_id: str = "", revision: str = "", device: str = "auto",
                dtype: str = "auto") -> io.NodeOutput:
        return _run("SODECModelLoader", model_name=model_name, hub_repo_id=hub_repo_id, revision=revision,
                    device=device, dtype=dtype)


class SODECEncode(io.ComfyNode):
    """IMAGE batch -> SODEC_BITSTREAM (one file per item) and the mean bpp."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return v3_schema("SODECEncode")

    @classmethod
    def execute(cls, image: Any, sodec_model: Any, quality: int = DEFAULT_QUALITY, mask: Any = None,
                effort: int = DEFAULT_EFFORT, resampling: str = coding.DEFAULT_RESAMPLING) -> io.NodeOutput:
        return _run("SODECEncode", image=image, sodec_model=sodec_model, quality=quality, mask=mask, effort=effort,
                    resampling=resampling)


class SODECDecode(io.ComfyNode):
    """SODEC_BITSTREAM -> IMAGE and MASK, by the diffusion or the fidelity decoder."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return v3_schema("SODECDecode")

    @classmethod
    def execute(cls, bitstream: Any, sodec_model: Any, decode_path: str = coding.DEFAULT_DECODE_PATH,
                guidance: float = coding.DEFAULT_GUIDANCE, tile_size: int = coding.DEFAULT_TILE_PX) -> io.NodeOutput:
        return _run("SODECDecode", bitstream=bitstream, sodec_model=sodec_model, decode_path=decode_path,
                    guidance=guidance, tile_size=tile_size)


class SODECSave(io.ComfyNode):
    """SODEC_BITSTREAM -> .sdc files in the output folder, with a preview, size and bpp."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return v3_schema("SODECSave")

    @classmethod
    def execute(cls, bitstream: Any, filename_prefix: str = files.DEFAULT_PREFIX,
                preview: Any = None) -> io.NodeOutput:
        return _run("SODECSave", bitstream=bitstream, filename_prefix=filename_prefix, preview=preview)


class SODECLoad(io.ComfyNode):
    """An .sdc file from the input or output folder -> SODEC_BITSTREAM."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return v3_schema("SODECLoad")

    @classmethod
    def validate_inputs(cls, sdc_file: str) -> bool | str:
        return schema.validate_load(sdc_file)

    @classmethod
    def fingerprint_inputs(cls, sdc_file: str) -> str:
        return files.file_fingerprint(sdc_file)

    @classmethod
    def execute(cls, sdc_file: str) -> io.NodeOutput:
        return _run("SODECLoad", sdc_file=sdc_file)


NODE_LIST: list[type[io.ComfyNode]] = [SODECModelLoader, SODECEncode, SODECDecode, SODECSave, SODECLoad]


class SODECExtension(ComfyExtension):
    """What comfy_entrypoint hands to ComfyUI."""

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODE_LIST)


async def comfy_entrypoint() -> SODECExtension:
    return SODECExtension()
