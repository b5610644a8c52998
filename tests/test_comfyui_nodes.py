"""The ComfyUI node pack through ComfyUI's node contract, on the CPU, without ComfyUI installed.

The V1 classes are what ComfyUI calls on older versions and are generated from the same definitions as the
V3 ones (schema.NODES), and both run the same functions (comfyui_nodes.model_loading, coding and files); the
real V3 path is covered by the opt-in end-to-end test (tests/test_comfyui_e2e.py). Where ComfyUI's modules
matter (model management, progress bar, interruption) small stand-ins are put in sys.modules, the way ComfyUI
has its modules loaded before node packs.
"""

from __future__ import annotations

import json
import mimetypes
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import comfyui_nodes
import sodec_plugin
from comfyui_nodes import coding, model_loading, paths
from sodec_plugin import codec
from sodec_plugin.container import FormatError
from sodec_plugin.hub import ModelNotFoundError, bundled_models
from sodec_plugin.testing import save_tiny_model
from tests.conftest import kodak_crop

NODE_IDS = ("SODECModelLoader", "SODECEncode", "SODECDecode", "SODECSave", "SODECLoad")
WORKFLOW = Path(comfyui_nodes.__file__).parent / "workflows" / "sodec_roundtrip_api.json"


def comfy_image(*crops: Any) -> torch.Tensor:
    """PIL images -> ComfyUI IMAGE (B, H, W, C float32 in [0, 1])."""
    return torch.stack([torch.from_numpy(np.asarray(c, dtype=np.float32) / 255.0) for c in crops])


def node(node_id: str) -> Any:
    return comfyui_nodes.NODE_CLASS_MAPPINGS[node_id]()


def call(node_id: str, **kwargs: Any) -> dict[str, Any]:
    """What ComfyUI does: instantiate, call FUNCTION with the inputs as keywords."""
    obj = node(node_id)
    return getattr(obj, obj.FUNCTION)(**kwargs)


def load(model: Path | str, device: str = "cpu", dtype: str = "auto") -> model_loading.SODECModelHandle:
    out = call("SODECModelLoader", model_name=str(model), hub_repo_id="", revision="", device=device, dtype=dtype)
    return out["result"][0]


@pytest.fixture()
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """ComfyUI's input, output, temp and models/sodec folders, in a temporary place."""
    d = {k: tmp_path / k for k in ("input", "output", "temp", "models")}
    for p in d.values():
        p.mkdir()
    monkeypatch.setattr(paths, "input_directory", lambda: d["input"])
    monkeypatch.setattr(paths, "output_directory", lambda: d["output"])
    monkeypatch.setattr(paths, "temp_directory", lambda: d["temp"])
    monkeypatch.setattr(paths, "model_roots", lambda: [d["models"]])
    return d


# ---- the package as ComfyUI sees it ------------------------------------------------------------------
def test_import_is_light_and_offers_v1_outside_comfyui() -> None:
    """Outside ComfyUI the package offers the V1 mappings (never also comfy_entrypoint), and importing it
    imports neither torch nor numpy."""
    code = ("import sys, comfyui_nodes as c; "
            "print(sorted(c.__all__), hasattr(c, 'comfy_entrypoint'), "
            "[m for m in ('torch', 'numpy', 'diffusers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(comfyui_nodes.__file__).parents[1]).stdout.strip()
    assert out == "['NODE_CLASS_MAPPINGS', 'NODE_DISPLAY_NAME_MAPPINGS', 'WEB_DIRECTORY'] False []"


def test_mappings_and_sdc_mime() -> None:
    assert tuple(comfyui_nodes.NODE_CLASS_MAPPINGS) == NODE_IDS
    assert set(comfyui_nodes.NODE_DISPLAY_NAME_MAPPINGS) == set(NODE_IDS)
    assert all(name.startswith("SODEC ") for name in comfyui_nodes.NODE_DISPLAY_NAME_MAPPINGS.values())
    # ComfyUI's Load Image lists input files whose MIME type is image/*
    assert mimetypes.guess_type("photo.sdc", strict=False)[0] == "image/x-sodec"


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_v1_contract(node_id: str) -> None:
    cls = comfyui_nodes.NODE_CLASS_MAPPINGS[node_id]
    types_ = cls.INPUT_TYPES()
    assert set(types_) <= {"required", "optional"}
    for group in types_.values():
        for name, spec in group.items():
            assert isinstance(name, str) and isinstance(spec, tuple) and len(spec) == 2
            kind, opts = spec
            assert isinstance(kind, (str, list)) and isinstance(opts, dict)
            if isinstance(kind, list) and "default" in opts:
                assert opts["default"] in kind
    assert callable(getattr(cls, cls.FUNCTION))
    assert cls.CATEGORY == "SODEC"
    assert len(cls.RETURN_TYPES) == len(cls.RETURN_NAMES)
    assert cls.OUTPUT_NODE is (node_id == "SODECSave")


def test_v1_input_and_output_types() -> None:
    m = comfyui_nodes.NODE_CLASS_MAPPINGS
    req = {k: m[k].INPUT_TYPES()["required"] for k in NODE_IDS}
    assert list(req["SODECModelLoader"]) == ["model_name", "hub_repo_id", "revision", "device", "dtype"]
    assert req["SODECModelLoader"]["model_name"][0][0] == "default"
    assert req["SODECModelLoader"]["device"][0] == ["auto", "cpu"]
    assert req["SODECModelLoader"]["dtype"][0] == ["auto", "fp32", "fp16", "bf16"]
    assert m["SODECModelLoader"].RETURN_TYPES == ("SODEC_MODEL",)
    assert {k: v[0] for k, v in req["SODECEncode"].items()} == {"image": "IMAGE", "sodec_model": "SODEC_MODEL",
                                                                  "quality": "INT"}
    assert req["SODECEncode"]["quality"][1] | {"tooltip": ""} == {"default": 75, "min": 1, "max": 100, "step": 1,
                                                                   "tooltip": ""}
    effort = m["SODECEncode"].INPUT_TYPES()["optional"]["effort"]  # optional: older workflows load as they were
    assert effort[0] == "INT" and effort[1] | {"tooltip": ""} == {"default": 0, "min": 0, "max": 9, "step": 1,
                                                                  "tooltip": ""}
    assert m["SODECEncode"].RETURN_TYPES == ("SODEC_BITSTREAM", "FLOAT")
    # auto first and the default; diffusion and fidelity stay, so workflows saved with them load as they were
    assert req["SODECDecode"]["decode_path"][0] == ["auto", "diffusion", "fidelity"]
    assert req["SODECDecode"]["decode_path"][1]["default"] == "auto"
    assert "higher stays closer to the original" in req["SODECDecode"]["guidance"][1]["tooltip"]
    assert req["SODECDecode"]["guidance"][1]["default"] == coding.DEFAULT_GUIDANCE
    assert req["SODECDecode"]["guidance"][0] == "FLOAT" and req["SODECDecode"]["tile_size"][0] == "INT"
    assert m["SODECDecode"].RETURN_TYPES == ("IMAGE", "MASK")
    assert set(req["SODECSave"]) == {"bitstream", "filename_prefix"}
    assert m["SODECSave"].INPUT_TYPES()["optional"]["preview"][0] == "IMAGE"
    assert m["SODECSave"].RETURN_TYPES == ()
    assert list(req["SODECLoad"]) == ["sdc_file"] and m["SODECLoad"].RETURN_TYPES == ("SODEC_BITSTREAM", "FLOAT")


# ---- the front-end extension (web/) ------------------------------------------------------------------
REPO = Path(comfyui_nodes.__file__).parents[1]
WEB = Path(comfyui_nodes.__file__).parent / "web"


def test_web_directory_is_found_from_either_install_and_shipped() -> None:
    """ComfyUI serves os.path.join(<the folder it loaded>, WEB_DIRECTORY): the repository root (its
    __init__.py re-exports the pack) or comfyui_nodes/ itself. The wheel carries the files."""
    import fnmatch
    import os

    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    assert sorted(p.name for p in WEB.iterdir()) == ["sodec.js"]
    for loaded_from in (REPO, WEB.parent):
        assert Path(os.path.abspath(os.path.join(loaded_from, comfyui_nodes.WEB_DIRECTORY))) == WEB
    code = ("import importlib.util, sys, types; sys.modules['folder_paths'] = types.ModuleType('folder_paths'); "
            "spec = importlib.util.spec_from_file_location('sodec_root', sys.argv[1]); "
            "m = importlib.util.module_from_spec(spec); sys.modules['sodec_root'] = m; spec.loader.exec_module(m); "
            "print(m.WEB_DIRECTORY)")
    out = subprocess.run([sys.executable, "-c", code, str(REPO / "__init__.py")], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout.strip()  # as ComfyUI loads a custom node folder
    assert Path(out) == WEB
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["comfyui_nodes"]
    for f in WEB.iterdir():
        assert any(fnmatch.fnmatch(f"web/{f.name}", g) for g in globs), f"{f.name} is not in the wheel"


STUB_APP = "export const app = { extensions: [], registerExtension(e) { this.extensions.push(e); } };\n"
DRIVER = """
globalThis.document = { createElement: (tag) => ({ tag, style: {}, value: "", className: "" }) };
const { app } = await import("./scripts/app.js");
await import("./extensions/sodec/sodec.js");
const [category] = process.argv.slice(2);
function nodeType() {  // the parts of LiteGraph's node the extension uses
    function T() { this.widgets = []; this.size = [300, 100]; this.dirty = 0; }
    T.prototype.addDOMWidget = function (name, type, element, options) {
        const w = { name, type, element, options, get value() { return options.getValue(); },
                    set value(v) { options.setValue(v); } };
        this.widgets.push(w);
        return w;
    };
    T.prototype.computeSize = function () {
        return [200, 100 + this.widgets.reduce((h, w) => h + w.options.getMinHeight(), 0)];
    };
    T.prototype.setSize = function (size) { this.size = size; };
    T.prototype.setDirtyCanvas = function () { this.dirty++; };
    return T;
}
const ours = nodeType(), other = nodeType();
let chained = 0;
ours.prototype.onExecuted = function () { chained++; };
for (const e of app.extensions) {
    await e.beforeRegisterNodeDef?.(ours, { name: "SODECDecode", category });
    await e.beforeRegisterNodeDef?.(other, { name: "PreviewAny", category: "utils" });
}
const node = new ours();
node.onExecuted({ images: [] });
const before = node.widgets.length;
node.onExecuted({ text: ["first line", "a second line"] });
const height = node.size[1];
node.onExecuted({ text: ["rerun"] });
console.log(JSON.stringify({
    names: app.extensions.map((e) => e.name), chained, before, height, size: node.size, dirty: node.dirty,
    otherHooked: typeof new other().onExecuted,
    widgets: node.widgets.map((w) => ({ name: w.name, value: w.value, serialize: w.serialize,
                                        inPrompt: w.options.serialize, readOnly: w.element.readOnly })),
}));
"""


def test_web_extension_shows_the_node_text(tmp_path: Path) -> None:
    """web/sodec.js under Node.js, with the front end's app and node reduced to what it touches: it hooks the
    pack's nodes (by schema.CATEGORY) and no others, keeps their own onExecuted, shows `ui.text` in one
    read-only box that a rerun updates, and keeps that box out of the saved workflow and the prompt. What
    it looks like in ComfyUI itself is the end-to-end test's (tests/test_comfyui_e2e.py)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "app.js").write_text(STUB_APP)
    (tmp_path / "extensions" / "sodec").mkdir(parents=True)
    shutil.copy(WEB / "sodec.js", tmp_path / "extensions" / "sodec" / "sodec.js")
    (tmp_path / "package.json").write_text('{"type": "module"}')
    (tmp_path / "driver.js").write_text(DRIVER)
    from comfyui_nodes import schema

    out = json.loads(subprocess.run([node, "driver.js", schema.CATEGORY], cwd=tmp_path, capture_output=True,
                                    text=True, check=True, timeout=60).stdout)
    assert out["names"] == ["sodec.NodeReport"] and out["otherHooked"] == "undefined"
    assert out["chained"] == 3 and out["before"] == 0 and out["dirty"] == 2
    assert out["widgets"] == [{"name": "sodec_report", "value": "rerun", "serialize": False, "inPrompt": False,
                               "readOnly": True}]
    assert out["height"] > 100 + 16 * 2 and out["size"][0] >= 300  # grown to the text, never shrunk


# ---- encode, decode, save, load ----------------------------------------------------------------------
def test_roundtrip_batch_matches_engine(tiny_fidelity: Path) -> None:
    crops = [kodak_crop(1, (0, 0, 96, 64)), kodak_crop(2, (32, 32, 128, 96))]
    handle = load(tiny_fidelity)
    assert "fidelity decoder only" in handle.describe()
    enc = call("SODECEncode", image=comfy_image(*crops), sodec_model=handle, quality=60)
    bits, bpp = enc["result"]
    assert len(bits) == 2 and len(enc["ui"]["text"]) == 2
    heads = [sodec_plugin.read_header(b) for b in bits.files]
    assert [(h["width"], h["height"]) for h in heads] == [(96, 64)] * 2
    assert bpp == pytest.approx(sum(h["bits_per_pixel"] for h in heads) / 2)
    # one file per item, the same bytes the engine writes for that image
    assert bits.files[0] == sodec_plugin.compress(crops[0], model=handle.model, quality=60)
    # what the node shows for each image: size, bytes, bits per pixel and the model the file names
    assert enc["ui"]["text"] == [f"item {i}: 96x64 RGB, {len(bits.files[i]):,} bytes, {h['bits_per_pixel']:.4f} "
                                 f"bpp, {handle.identity}" for i, h in enumerate(heads)]

    searched = call("SODECEncode", image=comfy_image(crops[0]), sodec_model=handle, quality=60, effort=1)
    assert searched["result"][0].files[0] == sodec_plugin.compress(crops[0], model=handle.model, quality=60,
                                                                   effort=1) != bits.files[0]

    dec = call("SODECDecode", bitstream=bits, sodec_model=handle, decode_path="fidelity", guidance=1.0,
               tile_size=768)
    image, mask = dec["result"]
    assert image.shape == (2, 64, 96, 3) and image.dtype == torch.float32
    assert mask.shape == (2, 64, 96) and not mask.any()
    for i, data in enumerate(bits.files):
        ref = np.asarray(sodec_plugin.decompress(data, model=handle.model, mode="fidelity"), dtype=np.float32)
        np.testing.assert_array_equal(image[i].numpy(), ref / 255.0)


def test_fidelity_only_model_says_so(tiny_fidelity: Path) -> None:
    handle = load(tiny_fidelity)
    bits = call("SODECEncode", image=comfy_image(kodak_crop(3, (0, 0, 64, 64))), sodec_model=handle,
                quality=75)["result"][0]
    dec = call("SODECDecode", bitstream=bits, sodec_model=handle, decode_path="diffusion", guidance=1.0,
               tile_size=768)
    assert dec["result"][0].shape == (1, 64, 64, 3)
    assert any("no diffusion path" in t for t in dec["ui"]["text"])
    assert "fidelity decoder" in dec["ui"]["text"][0]
    assert "guidance 1.00 not used" in dec["ui"]["text"][-1]


def decode_defaults() -> dict[str, Any]:
    """SODECDecode's widget values on a new node: the defaults it declares."""
    spec = comfyui_nodes.NODE_CLASS_MAPPINGS["SODECDecode"].INPUT_TYPES()["required"]
    return {name: opts["default"] for name, (_, opts) in spec.items() if "default" in opts}


@pytest.mark.parametrize("model", ["tiny_fidelity", "tiny_full"])
def test_the_defaults_are_what_the_model_does(model: str, request: pytest.FixtureRequest) -> None:
    """A new SODECDecode node, left as it is, decodes with the model's own best path and says which; no
    widget claims a decoder that did not run, and the text says whether guidance was read."""
    handle = load(request.getfixturevalue(model))
    bits = coding.encode_images(handle, comfy_image(kodak_crop(3, (0, 0, 64, 48))))
    dec = call("SODECDecode", bitstream=bits, sodec_model=handle, **decode_defaults())
    ran = "diffusion" if handle.has_diffusion else "fidelity"
    text = dec["ui"]["text"]
    assert text[0] == f"decoded 1 image(s) of 64x48 with the {ran} decoder of {handle.identity}"
    ref = np.asarray(sodec_plugin.decompress(bits.files[0], model=handle.model, mode=ran), dtype=np.float32)
    np.testing.assert_array_equal(dec["result"][0][0].numpy(), ref / 255.0)
    if handle.has_diffusion:
        assert text[1:] == ["guidance 1.00 (diffusion decoder)"]
    else:
        assert text[1:] == [f"auto: {handle.identity} has no diffusion path, so its fidelity decoder ran",
                            "guidance 1.00 not used: the fidelity decoder does not read it"]


def test_guidance_acts_on_the_diffusion_decoder_only(tiny_full: Path) -> None:
    """What the guidance tooltip says: it changes the diffusion decoder's picture, not the fidelity one's."""
    handle = load(tiny_full)
    bits = coding.encode_images(handle, comfy_image(kodak_crop(5, (0, 0, 64, 48))))
    out = {}
    for path in ("diffusion", "fidelity"):
        for g in (0.0, 2.0):
            dec = call("SODECDecode", bitstream=bits, sodec_model=handle, decode_path=path, guidance=g, tile_size=768)
            out[path, g] = dec["result"][0]
            assert dec["ui"]["text"][-1] == coding.guidance_note(handle.model, path, g)
    assert not torch.equal(out["diffusion", 0.0], out["diffusion", 2.0])
    assert torch.equal(out["fidelity", 0.0], out["fidelity", 2.0])
    assert "not used" in coding.guidance_note(handle.model, "fidelity", 2.0)
    assert "not used" not in coding.guidance_note(handle.model, "diffusion", 2.0)


def test_diffusion_path(tiny_full: Path) -> None:
    handle = load(tiny_full)
    assert handle.has_diffusion and "diffusion and fidelity" in handle.describe()
    bits = call("SODECEncode", image=comfy_image(kodak_crop(4, (0, 0, 80, 48))), sodec_model=handle,
                quality=40)["result"][0]
    out = {}
    for path in ("diffusion", "fidelity"):
        dec = call("SODECDecode", bitstream=bits, sodec_model=handle, decode_path=path, guidance=0.5, tile_size=768)
        assert dec["result"][0].shape == (1, 48, 80, 3)
        assert f"with the {path} decoder" in dec["ui"]["text"][0]
        out[path] = dec["result"][0]
    assert not torch.equal(out["diffusion"], out["fidelity"])


def test_alpha_becomes_mask(tiny_fidelity: Path) -> None:
    handle = load(tiny_fidelity)
    rgba = torch.rand(1, 40, 56, 4)
    rgba[..., 3] = 1.0
    rgba[:, :20, :, 3] = 0.0
    bits = call("SODECEncode", image=rgba, sodec_model=handle, quality=75)["result"][0]
    assert bits.headers()[0]["mode"] == "RGBA"
    mask = call("SODECDecode", bitstream=bits, sodec_model=handle, decode_path="fidelity", guidance=1.0,
                tile_size=768)["result"][1]
    assert torch.equal(mask[0, :20], torch.ones(20, 56)) and not mask[0, 20:].any()


def test_mask_input_is_stored_as_alpha(tiny_fidelity: Path) -> None:
    handle = load(tiny_fidelity)
    image = comfy_image(kodak_crop(3, (0, 0, 56, 40)), kodak_crop(4, (0, 0, 56, 40)))
    mask = torch.zeros(1, 40, 56)
    mask[:, 10:30, 8:48] = torch.linspace(0, 1, 40)  # one mask for the batch, partial transparency
    bits = call("SODECEncode", image=image, sodec_model=handle, quality=75, mask=mask)["result"][0]
    assert [h["mode"] for h in bits.headers()] == ["RGBA", "RGBA"]
    images, masks = call("SODECDecode", bitstream=bits, sodec_model=handle, decode_path="fidelity", guidance=1.0,
                         tile_size=768)["result"]
    assert images.shape == (2, 40, 56, 3)
    assert torch.allclose(masks, mask.expand(2, -1, -1), atol=0.5 / 255)  # alpha is lossless at 8 bits
    # Load Image's mask of an image without alpha (64x64 zeros) stores nothing; a real mismatch is refused.
    plain = call("SODECEncode", image=image, sodec_model=handle, quality=75, mask=torch.zeros(1, 64, 64))
    assert [h["mode"] for h in plain["result"][0].headers()] == ["RGB", "RGB"]
    with pytest.raises(ValueError, match="the mask is 64x64"):
        call("SODECEncode", image=image, sodec_model=handle, quality=75, mask=torch.ones(1, 64, 64))


def test_batch_of_mixed_sizes_is_refused(tiny_fidelity: Path) -> None:
    handle = load(tiny_fidelity)
    a = coding.encode_images(handle, comfy_image(kodak_crop(1, (0, 0, 64, 64))))
    b = coding.encode_images(handle, comfy_image(kodak_crop(1, (0, 0, 80, 64))))
    with pytest.raises(ValueError, match="share one size"):
        coding.decode_bitstream(handle, coding.SODECBitstream(a.files + b.files), "fidelity")


def test_other_model_is_refused(tiny_fidelity: Path, tmp_path: Path) -> None:
    other = load(save_tiny_model(tmp_path / "other", diffusion=False, seed=1))
    bits = coding.encode_images(load(tiny_fidelity), comfy_image(kodak_crop(1, (0, 0, 64, 64))))
    with pytest.raises(codec.ModelMismatchError):
        coding.decode_bitstream(other, bits, "fidelity")


def test_save_writes_files_with_preview(tiny_fidelity: Path, dirs: dict[str, Path]) -> None:
    handle = load(tiny_fidelity)
    image = comfy_image(kodak_crop(5, (0, 0, 64, 48)), kodak_crop(6, (0, 0, 64, 48)))
    bits = call("SODECEncode", image=image, sodec_model=handle, quality=50)["result"][0]
    out = call("SODECSave", bitstream=bits, filename_prefix="sodec/test")
    assert out["result"] == ()
    saved = out["ui"]["sdc"]
    assert [s["filename"] for s in saved] == ["test_00001_.sdc", "test_00002_.sdc"]
    for s, data in zip(saved, bits.files, strict=True):
        assert (dirs["output"] / "sodec" / s["filename"]).read_bytes() == data
        assert s["bytes"] == len(data) and s["bpp"] == pytest.approx(8 * len(data) / (64 * 48), abs=1e-5)
    assert len(out["ui"]["text"]) == 2 and "bpp" in out["ui"]["text"][0] and "bytes" in out["ui"]["text"][0]
    # previews: the encoder's images, as PNGs in the temp folder
    assert len(out["ui"]["images"]) == 2
    assert all((dirs["temp"] / p["filename"]).is_file() and p["type"] == "temp" for p in out["ui"]["images"])
    # the counter goes on; an explicit preview wins; the prefix cannot leave the output folder
    again = call("SODECSave", bitstream=bits, filename_prefix="sodec/test", preview=image[:1])
    assert again["ui"]["sdc"][0]["filename"] == "test_00003_.sdc" and len(again["ui"]["images"]) == 1
    with pytest.raises(ValueError, match="outside"):
        call("SODECSave", bitstream=bits, filename_prefix="../escape")


def test_load_from_input_folder(tiny_fidelity: Path, dirs: dict[str, Path]) -> None:
    handle = load(tiny_fidelity)
    bits = coding.encode_images(handle, comfy_image(kodak_crop(7, (0, 0, 64, 64))))
    (dirs["input"] / "sub").mkdir()
    (dirs["input"] / "sub" / "a.sdc").write_bytes(bits.files[0])
    (dirs["input"] / "not-sdc.png").write_bytes(b"x")
    cls = comfyui_nodes.NODE_CLASS_MAPPINGS["SODECLoad"]
    assert cls.INPUT_TYPES()["required"]["sdc_file"][0] == ["sub/a.sdc"]
    assert cls.VALIDATE_INPUTS("sub/a.sdc") is True
    assert "no .sdc file" in cls.VALIDATE_INPUTS("missing.sdc")
    assert "outside" in cls.VALIDATE_INPUTS("../x.sdc")
    out = call("SODECLoad", sdc_file="sub/a.sdc")
    loaded, bpp = out["result"]
    assert loaded.files == bits.files and bpp == pytest.approx(bits.mean_bpp())
    assert out["ui"]["text"][0].startswith("a.sdc: 64x64 RGB")
    before = cls.IS_CHANGED("sub/a.sdc")
    (dirs["input"] / "sub" / "a.sdc").write_bytes(bits.files[0][:-1] + b"\0")
    assert cls.IS_CHANGED("sub/a.sdc") != before
    with pytest.raises(FormatError):
        call("SODECLoad", sdc_file="sub/a.sdc")


def test_load_what_save_wrote(tiny_fidelity: Path, dirs: dict[str, Path]) -> None:
    handle = load(tiny_fidelity)
    bits = coding.encode_images(handle, comfy_image(kodak_crop(8, (0, 0, 64, 64))))
    saved = call("SODECSave", bitstream=bits, filename_prefix="sodec/mine")["ui"]["sdc"][0]
    cls = comfyui_nodes.NODE_CLASS_MAPPINGS["SODECLoad"]
    choice = f"sodec/{saved['filename']} [output]"
    assert cls.INPUT_TYPES()["required"]["sdc_file"][0] == [choice]
    assert cls.VALIDATE_INPUTS(choice) is True
    assert "outside the output folder" in cls.VALIDATE_INPUTS("../x.sdc [output]")
    loaded = call("SODECLoad", sdc_file=choice)["result"][0]
    assert loaded.files == bits.files and loaded.names == [saved["filename"]]


# ---- models ------------------------------------------------------------------------------------------
def test_model_folder_listing_and_lone_weights_file(tiny_fidelity: Path, tiny_full: Path,
                                                    dirs: dict[str, Path]) -> None:
    models = dirs["models"]
    shutil.copytree(tiny_fidelity, models / "fid")
    shutil.copytree(tiny_full, models / "group" / "full")
    (models / "group" / "full" / "base" / "vit").mkdir(parents=True)  # a model's insides are not listed
    shutil.copy(tiny_full / "model.safetensors", models / "group" / "full" / "base" / "vit" / "model.safetensors")
    shutil.copy(tiny_fidelity / "model.safetensors", models / "lone.safetensors")
    (models / "other.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")  # not a SODEC model
    assert model_loading.model_choices()[0] == "default"
    assert [c for c in model_loading.model_choices() if c != "default" and c not in model_loading.release_names()] == [
        "fid", "group/full", "lone.safetensors"]
    by_folder = load("fid")
    by_file = load("lone.safetensors")
    assert by_file.model.digest == by_folder.model.digest
    assert by_file.model is by_folder.model  # the engine shares one instance per weights
    with pytest.raises(FileNotFoundError, match="refresh"):
        load("gone")
    with pytest.raises(ValueError, match="not a SODEC model"):
        model_loading.folder_for_weights_file(models / "other.safetensors", dirs["temp"])


def test_hub_repo_id_takes_precedence() -> None:
    assert model_loading.resolve_model_source("default", "  org/name ") == "org/name"
    assert model_loading.resolve_model_source("default", "") is None


def test_default_model_message_when_not_bundled() -> None:
    if bundled_models():
        pytest.skip("a bundled model is installed")
    with pytest.raises(ModelNotFoundError, match="bundled default"):
        load("default")


def test_dtype_and_device_choices(tiny_fidelity: Path) -> None:
    assert model_loading.resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert model_loading.resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    assert model_loading.resolve_device("cpu") == torch.device("cpu")
    handle = load(tiny_fidelity, dtype="bf16")
    assert handle.model.dtype == torch.bfloat16 and "bfloat16" in handle.describe()


# ---- ComfyUI's model management, progress bar and interruption (stand-ins) ----------------------------
class Interrupted(Exception):
    pass


@pytest.fixture()
def fake_comfy(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """Stand-ins for the parts of comfy.* the nodes use, registered as ComfyUI registers its modules."""
    state = types.SimpleNamespace(loads=[], bars=[], interrupt=False, patchers=[])

    class ModelPatcher:
        def __init__(self, model: Any, load_device: Any, offload_device: Any, size: int = 0) -> None:
            self.model, self.load_device, self.offload_device = model, load_device, offload_device
            state.patchers.append(self)

    class ProgressBar:
        def __init__(self, total: int) -> None:
            self.total, self.values = total, []
            state.bars.append(self)

        def update_absolute(self, value: int, total: int | None = None) -> None:
            self.values.append((value, total))

    def interrupted() -> None:
        if state.interrupt:
            raise Interrupted()

    mm = types.SimpleNamespace(
        get_torch_device=lambda: torch.device("cpu"), unet_offload_device=lambda: torch.device("cpu"),
        load_models_gpu=lambda models, **kw: state.loads.append((models, kw)),
        throw_exception_if_processing_interrupted=interrupted,
        should_use_fp16=lambda device=None: False, should_use_bf16=lambda device=None: False)
    monkeypatch.setitem(sys.modules, "comfy.model_management", mm)
    monkeypatch.setitem(sys.modules, "comfy.model_patcher", types.SimpleNamespace(ModelPatcher=ModelPatcher))
    monkeypatch.setitem(sys.modules, "comfy.utils", types.SimpleNamespace(ProgressBar=ProgressBar))
    monkeypatch.setattr(model_loading, "_PATCHERS", {})
    return state


def test_model_management_loads_through_comfyui(tiny_fidelity: Path, fake_comfy: types.SimpleNamespace) -> None:
    handle = load(tiny_fidelity, device="auto")
    assert handle.patcher is fake_comfy.patchers[0] and handle.patcher.model.sodec is handle.model
    assert load(tiny_fidelity, device="auto").patcher is handle.patcher  # one patcher per model and device
    call("SODECEncode", image=comfy_image(kodak_crop(1, (0, 0, 64, 64))), sodec_model=handle, quality=75)
    assert fake_comfy.loads == [([handle.patcher], {"force_full_load": True})]
    assert all(t.device.type == "cpu" for t in (handle.model.compression.y_cdf, handle.model.compression.z_cdf))


def test_progress_bar_and_interruption(tiny_fidelity: Path, fake_comfy: types.SimpleNamespace) -> None:
    handle = load(tiny_fidelity, device="cpu")
    image = comfy_image(*[kodak_crop(i, (0, 0, 512, 448)) for i in (1, 2)])
    bits = call("SODECEncode", image=image, sodec_model=handle, quality=75)["result"][0]
    assert fake_comfy.bars[-1].values == [(100, 200), (200, 200)]
    # the decoder reports each tile (512x448 in small tiles: several tiles per image)
    call("SODECDecode", bitstream=bits, sodec_model=handle, decode_path="fidelity", guidance=1.0, tile_size=256)
    values = [v for v, _ in fake_comfy.bars[-1].values]
    assert values == sorted(values) and values[-1] == 200 and len(values) >= 2 * 3
    assert any(0 < v < 100 for v in values) and any(100 < v < 200 for v in values)
    # Cancel in ComfyUI: the node stops between items and between tiles
    fake_comfy.interrupt = True
    with pytest.raises(Interrupted):
        call("SODECEncode", image=image, sodec_model=handle, quality=75)
    with pytest.raises(Interrupted):
        call("SODECDecode", bitstream=bits, sodec_model=handle, decode_path="fidelity", guidance=1.0, tile_size=256)


def test_hooks_stop_between_tiles(tiny_fidelity: Path) -> None:
    handle = load(tiny_fidelity)
    bits = coding.encode_images(handle, comfy_image(kodak_crop(8, (0, 0, 512, 448))))
    seen: list[float] = []

    def interrupted() -> None:
        if len(seen) >= 2:
            raise Interrupted()

    with pytest.raises(Interrupted):
        coding.decode_bitstream(handle, bits, "fidelity", tile=256,
                              hooks=coding.RunHooks(1, progress=lambda d, n: seen.append(d), interrupted=interrupted))
    assert len(seen) == 2 and 0 < seen[0] < seen[1] < 1  # stopped after two tiles of the first image


# ---- the example workflow ----------------------------------------------------------------------------
def test_example_workflow_is_valid_api_format() -> None:
    wf = json.loads(WORKFLOW.read_text())
    classes = {n["class_type"] for n in wf.values()}
    assert {"LoadImage", "SODECModelLoader", "SODECEncode", "SODECSave", "SODECDecode", "SaveImage"} <= classes
    for node_id, n in wf.items():
        for value in n["inputs"].values():
            if isinstance(value, list):  # a link: [source node id, output index]
                assert value[0] in wf, f"node {node_id} links to missing node {value[0]}"
        if n["class_type"] in comfyui_nodes.NODE_CLASS_MAPPINGS:
            cls = comfyui_nodes.NODE_CLASS_MAPPINGS[n["class_type"]]
            spec = cls.INPUT_TYPES()
            assert set(spec["required"]) <= set(n["inputs"]) <= set(spec["required"]) | set(spec.get("optional", {}))
            for name, value in n["inputs"].items():
                kind = {**spec["required"], **spec.get("optional", {})}[name][0]
                if isinstance(kind, list) and name != "sdc_file":
                    assert value in kind
                if isinstance(value, list):
                    src = wf[value[0]]
                    src_cls = comfyui_nodes.NODE_CLASS_MAPPINGS.get(src["class_type"])
                    if src_cls is not None:
                        assert src_cls.RETURN_TYPES[value[1]] == kind
    loader = next(n for n in wf.values() if n["class_type"] == "SODECModelLoader")
    assert loader["inputs"]["model_name"] == "default"  # ships on the bundled model
