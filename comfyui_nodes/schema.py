"""The five nodes described once, as plain data plus a run function each, so that the V3 classes and the V1
fallback cannot drift apart (both are generated from, or call into, what is here)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sodec_plugin.rates import DEFAULT_EFFORT, DEFAULT_QUALITY, MAX_EFFORT, describe_ladders

from . import coding, files, model_loading

CATEGORY = "SODEC"  # where ComfyUI's node menu lists the nodes


@dataclass(frozen=True)
class In:
    """One node input. `options` may be a callable so that file lists are read when ComfyUI asks."""

    id: str
    type: str
    tooltip: str = ""
    default: Any = None
    options: Callable[[], list[str]] | tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    optional: bool = False

    def choices(self) -> list[str]:
        opts = self.options() if callable(self.options) else self.options
        return list(opts or ())


@dataclass(frozen=True)
class Out:
    type: str
    name: str
    tooltip: str = ""


@dataclass(frozen=True)
class NodeDef:
    node_id: str
    display_name: str
    description: str
    inputs: tuple[In, ...]
    outputs: tuple[Out, ...]
    run: Callable[..., tuple[tuple[Any, ...], dict[str, Any] | None]]
    output_node: bool = False


MODEL_IN = In("sodec_model", model_loading.MODEL_TYPE, "A SODEC model from SODEC Model Loader.")
BITSTREAM_IN = In("bitstream", coding.BITSTREAM_TYPE, "SODEC bitstreams: one .sdc file per batch item.")


def run_loader(model_name: str, hub_repo_id: str = "", revision: str = "", device: str = "auto",
               dtype: str = "auto") -> tuple[tuple[Any, ...], dict[str, Any]]:
    handle = model_loading.load_model_handle(model_name, hub_repo_id=hub_repo_id, revision=revision, device=device,
                                             dtype=dtype)
    return (handle,), {"text": [handle.describe()]}


def run_encode(image: Any, sodec_model: model_loading.SODECModelHandle, quality: int = DEFAULT_QUALITY,
               mask: Any = None, effort: int = DEFAULT_EFFORT,
               resampling: str = coding.DEFAULT_RESAMPLING) -> tuple[tuple[Any, ...], dict[str, Any]]:
    bits = coding.encode_images(sodec_model, image, int(quality), mask=mask, effort=int(effort),
                                resampling=resampling)
    return (bits, bits.mean_bpp()), {"text": bits.summary()}


def run_decode(bitstream: coding.SODECBitstream, sodec_model: model_loading.SODECModelHandle,
               decode_path: str = coding.DEFAULT_DECODE_PATH, guidance: float = coding.DEFAULT_GUIDANCE,
               tile_size: int = coding.DEFAULT_TILE_PX) -> tuple[tuple[Any, ...], dict[str, Any]]:
    images, masks, notes = coding.decode_bitstream(sodec_model, bitstream, decode_path=decode_path,
                                                   guidance=float(guidance), tile=int(tile_size))
    return (images, masks), {"text": notes}


def run_save(bitstream: coding.SODECBitstream, filename_prefix: str = files.DEFAULT_PREFIX,
             preview: Any = None) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return (), files.save_node(bitstream, filename_prefix, preview)


def run_load(sdc_file: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    bits = files.load_bitstream(sdc_file)
    return (bits, bits.mean_bpp()), {"text": bits.summary()}


NODES: dict[str, NodeDef] = {d.node_id: d for d in (
    NodeDef(
        "SODECModelLoader", "SODEC Model Loader",
        "Loads a SODEC codec model: the bundled default, a model folder or model.safetensors under models/sodec, "
        "or a Hugging Face Hub repo. Models are shared with the Pillow plugin and managed like ComfyUI's own.",
        (
            In("model_name", "COMBO", "'default' is the bundled model; then every released model (fetched from the "
               "Hugging Face Hub on first use), then models under models/sodec.",
               model_loading.DEFAULT_CHOICE, model_loading.model_choices),
            In("hub_repo_id", "STRING", "A Hugging Face Hub repo id (org/name); when set it replaces model_name.",
               ""),
            In("revision", "STRING", "Hub revision (branch, tag or commit) for hub_repo_id; empty for main.", ""),
            In("device", "COMBO", "auto: ComfyUI's device (the GPU unless --cpu); cpu: always the CPU.", "auto",
               model_loading.DEVICES),
            In("dtype", "COMBO", "auto: float32 on the CPU, half precision on GPUs that handle it.", "auto",
               model_loading.DTYPES),
        ),
        (Out(model_loading.MODEL_TYPE, "sodec_model", "The loaded SODEC model."),),
        run_loader,
    ),
    NodeDef(
        "SODECEncode", "SODEC Encode",
        "Compresses each image of the batch to a SODEC bitstream (.sdc); also gives the mean bits per pixel. "
        "After a run the node shows each file's size, bits per pixel, resampling (when not 1) and model.",
        (
            In("image", "IMAGE", "Images to compress (a batch gives one bitstream per image)."),
            MODEL_IN,
            In("quality", "INT", "1 (smallest files) to 100 (best quality): the model's rate points.",
               DEFAULT_QUALITY, min=1, max=100, step=1),
            In("mask", "MASK", "Optional transparency (1 = transparent, as Load Image gives it): stored exactly "
               "as the image's alpha; SODEC Decode gives it back as its MASK.", optional=True),
            In("effort", "INT", "Encoder search: 0 is fastest; 1 to 9 search longer for latents that code smaller "
               "at the same quality (slower encoding, the same decoder and files).", DEFAULT_EFFORT, min=0,
               max=MAX_EFFORT, step=1, optional=True),
            In("resampling", "COMBO", "Codes the image at 2/3, 1/2, 1/4 or 1/8 of its width and height; the decoder "
               f"scales it back up. auto, where that looks better for the bytes: {describe_ladders()}. "
               "1, 1.5, 2, 4, 8: that factor at every quality (1: full size).", coding.DEFAULT_RESAMPLING,
               coding.RESAMPLING_NAMES, optional=True),
        ),
        (Out(coding.BITSTREAM_TYPE, "bitstream", "One .sdc file per batch item."),
         Out("FLOAT", "bpp", "Mean bits per pixel over the batch (file size, headers included).")),
        run_encode,
    ),
    NodeDef(
        "SODECDecode", "SODEC Decode",
        "Decodes SODEC bitstreams to images with the one-step diffusion decoder or the fast fidelity decoder. "
        "After a run the node shows which decoder ran, of which model, and what the guidance did.",
        (
            BITSTREAM_IN,
            MODEL_IN,
            In("decode_path", "COMBO", "auto: the diffusion decoder when the model has one, else its fidelity "
               "decoder (SODEC Model Loader says which the model has); diffusion: the one-step diffusion "
               "decoder (realistic detail; a model without it uses its fidelity decoder and says so); fidelity: "
               "the fidelity decoder alone (fast, closest to the original in PSNR).", coding.DEFAULT_DECODE_PATH,
               coding.DECODE_PATHS),
            In("guidance", "FLOAT", "Fidelity guidance: higher stays closer to the original, lower looks sharper. "
               "A guided fidelity decoder goes from its best-looking picture at 0 to its closest to the original "
               "at 1 (above 1 reads as 1); the diffusion decoder from no guidance at 0 to as trained at 1, "
               "stronger above. Other fidelity decoders do not read it. The default is what the bundled model "
               "decodes at; after a run the node says what the guidance did.",
               coding.DEFAULT_GUIDANCE, min=0.0, max=10.0, step=0.05),
            In("tile_size", "INT", "Decoder tile size in pixels: smaller tiles use less memory.",
               coding.DEFAULT_TILE_PX, min=coding.MIN_TILE_PX, max=coding.MAX_TILE_PX, step=64),
        ),
        (Out("IMAGE", "image", "The decoded images."),
         Out("MASK", "mask", "Transparency of images stored with alpha (1 = transparent), else zeros.")),
        run_decode,
    ),
    NodeDef(
        "SODECSave", "SODEC Save",
        "Writes each bitstream as an .sdc file to the output folder and shows a preview with its size and bpp.",
        (
            BITSTREAM_IN,
            In("filename_prefix", "STRING", "File name prefix, relative to the output folder (subfolders allowed; "
               "%width%, %height% and %date% style fields as in Save Image).", files.DEFAULT_PREFIX),
            In("preview", "IMAGE", "Optional images to show (e.g. SODEC Decode's output); else the encoder's "
               "input is shown.", optional=True),
        ),
        (),
        run_save,
        output_node=True,
    ),
    NodeDef(
        "SODECLoad", "SODEC Load",
        "Reads an .sdc file from the input or output folder as a SODEC bitstream (ComfyUI's Load Image can also "
        "open .sdc files directly, decoding them with the model the file names).",
        (In("sdc_file", "COMBO", ".sdc files in the input folder, then those in the output folder (marked "
            "[output]: what SODEC Save wrote).", None, files.list_sdc_files),),
        (Out(coding.BITSTREAM_TYPE, "bitstream", "The file's bitstream."),
         Out("FLOAT", "bpp", "The file's bits per pixel.")),
        run_load,
    ),
)}


def validate_load(sdc_file: str) -> bool | str:
    """True, or why SODECLoad cannot read the file (ComfyUI shows the message before running)."""
    try:
        files.sdc_path(sdc_file)
    except (OSError, ValueError) as e:
        return str(e)
    return True
