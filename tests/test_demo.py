"""`sodec demo`: the comparison page served in this process and driven over HTTP with gradio_client, as a
browser would drive it (upload, quality change, downloads, bad uploads), and the work behind it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sodec_plugin
from sodec_plugin.demo.comparison import Comparer, UploadError, colour_bytes, open_upload, quality_for_size

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "kodim23.png"
# Small enough to be quick, large enough for MS-SSIM (161 px a side).
BOX = (240, 120, 432, 296)


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "parrots.png"
    with Image.open(EXAMPLE) as im:
        im.convert("RGB").crop(BOX).save(path)
    return path


@pytest.fixture(scope="module")
def client():
    from gradio_client import Client

    from sodec_plugin.demo.app import serve

    blocks = serve(host="127.0.0.1", block=False)
    try:
        yield Client(blocks.local_url, verbose=False)
    finally:
        blocks.close()
        blocks.sodec_page.close()


def _compare(client, path: Path, *, quality: float = 30, rate_by: str = "quality", target_kb: float = 2.0,
             codecs: tuple[str, ...] = ("avif", "jpeg")) -> dict:
    from gradio_client import handle_file

    out = client.predict(handle_file(str(path)), "", rate_by, quality, target_kb, 0, "diffusion", 1.0, list(codecs),
                         False, "1:1", api_name="/compare")
    names = ["status", "main", "left", "right", "pair", "table", "region", "x", "y", "crops", "sdc", "png"]
    # Outputs that the page relabels arrive as updates: {"value": ..., "label": ..., "__type__": "update"}.
    return {n: v.get("value") if isinstance(v, dict) and "__type__" in v and n in ("main", "pair") else v
            for n, v in zip(names, out, strict=True)}


def _pixels(path: str | Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _row(table: dict, label_start: str) -> dict:
    rows = [dict(zip(table["headers"], r, strict=True)) for r in table["data"]]
    return next(r for r in rows if r["codec"].startswith(label_start))


def test_upload_quality_change_and_downloads(client, photo):
    first = _compare(client, photo, quality=30)
    assert "bytes" in first["status"]
    sdc = Path(first["sdc"]).read_bytes()
    assert sodec_plugin.read_header(sdc)["width"] == BOX[2] - BOX[0]
    # The .sdc downloaded decodes to the picture shown on SODEC's side of the slider, and to the PNG download.
    decoded = np.asarray(sodec_plugin.decompress(sdc).convert("RGB"))
    original, shown = first["main"]
    np.testing.assert_array_equal(_pixels(shown), decoded)
    np.testing.assert_array_equal(_pixels(first["png"]), decoded)
    np.testing.assert_array_equal(_pixels(original), _pixels(photo))
    table = first["table"]
    assert {"PSNR (dB)", "MS-SSIM", "bytes", "bpp"} <= set(table["headers"])
    sodec_row = _row(table, "SODEC")
    assert sodec_row["bytes"] == f"{len(sdc):,}" and sodec_row["setting"] == "quality 30"
    assert float(sodec_row["MS-SSIM"]) > 0.5
    avif = _row(table, "AVIF")
    avif_bytes = int(avif["bytes"].replace(",", ""))
    # AVIF at SODEC's size, or its smallest file when it cannot go that low (and then the table says so).
    assert abs(avif_bytes / len(sdc) - 1) <= 0.05 or "smallest file" in avif["note"]
    assert first["right"]["value"] == "AVIF" and first["left"]["value"].startswith("SODEC")

    higher = _compare(client, photo, quality=80)
    sdc80 = Path(higher["sdc"]).read_bytes()
    assert len(sdc80) > len(sdc)
    assert _row(higher["table"], "SODEC")["setting"] == "quality 80"
    np.testing.assert_array_equal(_pixels(higher["main"][1]), np.asarray(sodec_plugin.decompress(sdc80)))

    # A target size: the highest quality whose file fits.
    sized = _compare(client, photo, rate_by="size", target_kb=len(sdc80) / 1000 - 0.001)
    fitted = Path(sized["sdc"]).read_bytes()
    assert len(sdc) <= len(fitted) < len(sdc80)
    assert 30 <= int(_row(sized["table"], "SODEC")["setting"].split()[1]) < 80


def test_crops_of_the_picked_region(client, photo):
    _compare(client, photo, quality=30)
    html = client.predict(10, 20, "2x", api_name="/crops")  # this client's last run
    assert html.count("<img ") == 4  # original, SODEC, AVIF, JPEG
    assert 'width="384"' in html and "Original" in html


def test_bad_uploads_are_said_on_the_page_and_the_server_goes_on(client, photo, tmp_path):
    text = tmp_path / "notes.png"
    text.write_bytes(b"not an image at all\n" * 20)
    cut = tmp_path / "cut.png"
    cut.write_bytes(photo.read_bytes()[: photo.stat().st_size // 2])
    assert "not an image Pillow can open" in _compare(client, text)["status"]
    bad = _compare(client, cut)
    assert "truncated or damaged" in bad["status"] and bad["sdc"] is None
    again = _compare(client, photo, quality=30)  # still serving, and still right
    assert Path(again["sdc"]).read_bytes() == sodec_plugin.compress(Image.open(photo), quality=30)


def test_page_loads_nothing_from_outside_and_sends_no_analytics(client):
    import httpx

    base = client.src.rstrip("/")
    config = httpx.get(f"{base}/config", timeout=30).json()
    assert config["analytics_enabled"] is False
    css = httpx.get(f"{base}/theme.css", timeout=30).text
    assert "system-ui" in css and "googleapis" not in css and "@import" not in css


def test_awkward_images_are_coded_as_sodec_stores_them(photo, tmp_path):
    src = Image.open(photo).convert("RGB")
    src.convert("CMYK").save(tmp_path / "cmyk.jpg")
    deep = (np.asarray(src.convert("L"), dtype=np.uint16) * 257)
    Image.fromarray(deep).save(tmp_path / "gray16.png")
    rgba = np.asarray(src.convert("RGBA")).copy()
    rgba[:, :50, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    Image.new("RGB", (1, 20000), (120, 60, 30)).save(tmp_path / "strip.png")
    comparer = Comparer()

    cmyk = open_upload(tmp_path / "cmyk.jpg")
    assert cmyk.image.mode == "RGB" and "CMYK" in cmyk.notes[0]
    gray = open_upload(tmp_path / "gray16.png")
    assert gray.image.mode == "L" and "8 bits" in gray.notes[0]
    alpha = open_upload(tmp_path / "alpha.png")
    result = comparer.run(alpha, quality=30, codecs=["jpeg"], perceptual=False)
    # The .sdc keeps the alpha plane exactly, and the others are matched to SODEC's colour data alone, which is
    # what the same image without alpha costs.
    assert np.array_equal(np.asarray(result.decoded.getchannel("A")), rgba[:, :, 3])
    assert colour_bytes(result.sdc) == len(sodec_plugin.compress(src, quality=30)) < len(result.sdc)
    strip = comparer.run(open_upload(tmp_path / "strip.png"), quality=30, codecs=["jpeg", "webp"])
    assert strip.decoded.size == (1, 20000)
    assert strip.rows[-1][-1].startswith("failed: ")  # WebP stops at 16383 px: one row says so, the rest goes on
    assert float(strip.rows[0][strip.columns.index("PSNR (dB)")]) > 20  # scored, whatever the perceptual metrics do
    assert "MS-SSIM needs" in " ".join(open_upload(tmp_path / "strip.png").notes)


def test_decompression_bomb_rule(photo, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(UploadError, match="decompression-bomb"):
        open_upload(photo)


def test_quality_for_size_is_the_highest_that_fits(photo):
    image = Image.open(photo).convert("RGB")
    at_50 = len(sodec_plugin.compress(image, quality=50))
    q, data, _ = quality_for_size(image, at_50, model=None, effort=0)
    assert q >= 50 and len(data) <= at_50
    assert q == 100 or len(sodec_plugin.compress(image, quality=q + 1)) > at_50
    assert quality_for_size(image, 10, model=None, effort=0)[0] == 1  # nothing fits: the smallest file


def test_decode_controls_follow_the_model(tiny_fidelity, tiny_full):
    from sodec_plugin.demo.app import Page

    page = Page()
    try:
        path_, guidance, note = page.model_controls(str(tiny_fidelity))
        assert path_["visible"] is False and guidance["visible"] is False and "fidelity decoder only" in note
        path_, guidance, note = page.model_controls(str(tiny_full))
        assert path_["visible"] is True and guidance["visible"] is True
    finally:
        page.close()


def test_gradio_is_imported_only_by_the_demo():
    code = ("import sys, sodec_plugin, sodec_plugin.cli, sodec_plugin.demo.comparison, pillow_codec; "
            "sodec_plugin.cli.build_parser().parse_args(['demo', '--port', '9']); "
            "assert 'gradio' not in sys.modules, 'gradio imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
