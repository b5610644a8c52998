"""Resampling through the command line (`sodec compress --resampling`, `sodec info`), SODECEncode's
resampling input and the demo's quality for an uploaded .sdc (Pillow's save option and info are tested in
test_pillow_plugin.py). The tiny fidelity model (rate positions 0..32) stands in for a release.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import comfyui_nodes
import sodec_plugin
from comfyui_nodes import coding
from sodec_plugin import container, rates
from sodec_plugin.cli import main
from tests.conftest import kodak_crop

TINY_MAX_POSITION = 32


# ---- the command line ------------------------------------------------------------------------------------------
def test_cli_resampling_and_info(tiny_fidelity: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    crop = kodak_crop(2, (0, 0, 97, 65))
    src = tmp_path / "in.png"
    crop.save(src)
    half, auto = tmp_path / "half.sdc", tmp_path / "auto.sdc"
    assert main(["compress", str(src), "-o", str(half), "--model", str(tiny_fidelity), "--quality", "40",
                 "--resampling", "2", "-q"]) == 0
    assert half.read_bytes() == sodec_plugin.compress(crop, model=str(tiny_fidelity), quality=40, resampling=2)
    assert main(["compress", str(src), "-o", str(auto), "--model", str(tiny_fidelity), "--quality", "40", "-q"]) == 0
    assert auto.read_bytes() == sodec_plugin.compress(crop, model=str(tiny_fidelity), quality=40)
    two_thirds = tmp_path / "two-thirds.sdc"
    assert main(["compress", str(src), "-o", str(two_thirds), "--model", str(tiny_fidelity), "--quality", "40",
                 "--resampling", "1.5", "-q"]) == 0
    capsys.readouterr()
    assert main(["info", str(half), str(auto), str(two_thirds)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(f"{half}: 97x65 RGB") and lines[0].endswith(", resampled 1/2 (coded 49x33)")
    assert lines[1].startswith(f"{auto}: 97x65 RGB") and "resampled" not in lines[1]
    assert lines[2].endswith(", resampled 2/3 (coded 65x44)")


@pytest.mark.parametrize("bad", ["3", "0", "half", "2.0"])
def test_cli_refuses_other_resampling(bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["compress", str(tmp_path / "in.png"), "--resampling", bad])
    assert "--resampling: choose from auto, 1, 1.5, 2, 4, 8" in capsys.readouterr().err


# ---- ComfyUI ---------------------------------------------------------------------------------------------------
def comfy_encode(**inputs: object) -> dict:
    node = comfyui_nodes.NODE_CLASS_MAPPINGS["SODECEncode"]()
    return getattr(node, node.FUNCTION)(**inputs)


def test_comfyui_encode_with_resampling(tiny_fidelity: Path) -> None:
    loader = comfyui_nodes.NODE_CLASS_MAPPINGS["SODECModelLoader"]()
    handle = getattr(loader, loader.FUNCTION)(model_name=str(tiny_fidelity), hub_repo_id="", revision="",
                                              device="cpu", dtype="auto")["result"][0]
    crop = kodak_crop(6, (0, 0, 72, 56))
    image = torch.from_numpy(np.asarray(crop, dtype=np.float32) / 255.0)[None]
    spec = comfyui_nodes.NODE_CLASS_MAPPINGS["SODECEncode"].INPUT_TYPES()["optional"]["resampling"]
    assert spec[0] == ["auto", "1", "1.5", "2", "4", "8"] and spec[1]["default"] == "auto"

    out = comfy_encode(image=image, sodec_model=handle, quality=40, resampling="4")
    bits = out["result"][0]
    assert bits.files[0] == sodec_plugin.compress(crop, model=handle.model, quality=40, resampling=4)
    assert out["ui"]["text"][0].startswith("item 0: 72x56 RGB, ") and ", coded at 1/4 size, " in out["ui"]["text"][0]
    plain = comfy_encode(image=image, sodec_model=handle, quality=40)  # a workflow saved without the input
    assert plain["result"][0].files[0] == sodec_plugin.compress(crop, model=handle.model, quality=40)
    assert "coded at" not in plain["ui"]["text"][0]
    two_thirds = comfy_encode(image=image, sodec_model=handle, quality=40, resampling="1.5")
    assert two_thirds["result"][0].files[0] == sodec_plugin.compress(crop, model=handle.model, quality=40,
                                                                     resampling=1.5)
    assert ", coded at 2/3 size, " in two_thirds["ui"]["text"][0]
    decoder = comfyui_nodes.NODE_CLASS_MAPPINGS["SODECDecode"]()
    decoded = getattr(decoder, decoder.FUNCTION)(bitstream=bits, sodec_model=handle, decode_path="fidelity",
                                                 guidance=1.0, tile_size=768)["result"][0]
    assert decoded.shape == (1, 56, 72, 3)
    with pytest.raises(ValueError, match="resampling"):
        coding.encode_images(handle, image, 40, resampling="3")


# ---- the demo --------------------------------------------------------------------------------------------------
def test_demo_shows_the_ladder_quality_of_an_uploaded_file(tiny_fidelity: Path, tmp_path: Path) -> None:
    """A low quality on an image with a half-size rung (the last of rates.LADDERS) codes at half size;
    the page shows the quality on the ladder, which codes at the file's point again, not the plain mapping."""
    from sodec_plugin.demo.comparison import Comparer, open_upload

    side = rates.LADDERS[-1][0]
    data = sodec_plugin.compress(kodak_crop(5, (0, 0, side, side)), model=str(tiny_fidelity), quality=20)
    f = container.parse(data)
    path = tmp_path / "upload.sdc"
    path.write_bytes(data)
    result = Comparer().run(open_upload(path), model=str(tiny_fidelity), perceptual=False)
    quality = rates.point_quality(f.resample, f.rate_position, TINY_MAX_POSITION, width=side, height=side)
    assert f.resample == 2 and quality != rates.position_to_quality(f.rate_position, TINY_MAX_POSITION)
    assert rates.coding_point(quality, TINY_MAX_POSITION, width=side, height=side) == (2, f.rate_position)
    assert result.entries[0].setting == f"quality {quality:g}, coded at 1/2 size"
    assert result.entries[0].pixels.shape == (side, side, 3)
    assert ", coded at 1/2 size, " in result.summary
