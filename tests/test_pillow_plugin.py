"""pillow_codec in the style of Pillow's plugin tests: registration, header-only open, round trips, resampling,
metadata, modes, draft/thumbnail, corrupt and truncated files, bombs, threads.

A tiny random fidelity-only model (made once per module) stands in for sodec-lite: it decodes
noise, but it is a real codec, so decoded pixels are compared with the engine's own decode.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import threading
import types
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, UnidentifiedImageError

import pillow_codec
import sodec_plugin
from pillow_codec import plugin
from sodec_plugin import codec, container, engine, rates
from sodec_plugin.container import Chunk, SDCFile
from tests.conftest import kodak_crop

REPO = Path(__file__).resolve().parents[1]
TINY_MAX_POSITION = 32  # the tiny config: 3 rate points x 16 substeps


def photo(index: int = 1, size: tuple[int, int] = (64, 48), left: int = 200, top: int = 150) -> Image.Image:
    """A real photo crop, RGB (conftest.kodak_crop)."""
    return kodak_crop(index, (left, top, left + size[0], top + size[1]))


def ramp_alpha(size: tuple[int, int]) -> Image.Image:
    w, h = size
    return Image.fromarray((np.arange(w * h) * 7 % 256).reshape(h, w).astype(np.uint8), "L")


def to_bytes(im: Image.Image, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="SODEC", **params)
    return buf.getvalue()


def assert_image_equal(a: Image.Image, b: Image.Image) -> None:
    assert a.mode == b.mode and a.size == b.size
    assert a.tobytes() == b.tobytes()


def with_crc(body: bytes) -> bytes:
    """A file body (everything before the trailer) with a correct CRC appended."""
    return body + struct.pack(">I", zlib.crc32(body))


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sodec_plugin.testing import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("pillow-tiny"), diffusion=False)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny convolutions run fastest on one thread, and the machine is shared."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def defaults(model: Path):
    """Each test starts with exactly {model: tiny}; whatever it registers is undone."""
    saved = plugin.options()
    plugin._defaults.clear()
    pillow_codec.register_sodec_opener(model=str(model))
    yield
    plugin._defaults.clear()
    plugin._defaults.update(saved)


@pytest.fixture(scope="module")
def rgb_file(model: Path) -> bytes:
    return sodec_plugin.compress(photo(1), model=str(model), quality=60)


# ---- registration and header-only open -----------------------------------------------------------
def test_registered() -> None:
    assert "SODEC" in Image.OPEN and "SODEC" in Image.SAVE
    assert Image.registered_extensions()[".sdc"] == "SODEC"
    assert Image.MIME["SODEC"] == "image/x-sodec"


def test_import_and_open_stay_light(tmp_path: Path, rgb_file: bytes, model: Path) -> None:
    """A fresh process imports the plugin and reads size, mode and info without torch or numpy."""
    path = tmp_path / "a.sdc"
    path.write_bytes(rgb_file)
    script = f"""
import json, sys, time
t0 = time.perf_counter()
import pillow_codec
t1 = time.perf_counter()
from PIL import Image
pillow_codec.register_sodec_opener(model={str(model)!r})
with Image.open({str(path)!r}) as im:
    size, mode, info = im.size, im.mode, dict(im.info)
t2 = time.perf_counter()
heavy = [m for m in ("torch", "numpy", "compressai", "diffusers", "transformers", "huggingface_hub",
                     "sodec_plugin.codec", "sodec_plugin.engine", "sodec_plugin.entropy") if m in sys.modules]
print(json.dumps({{"import_s": t1 - t0, "open_s": t2 - t1, "size": size, "mode": mode, "heavy": heavy,
                   "info": {{k: v for k, v in info.items() if isinstance(v, (int, float, str))}}}}))
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=60, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["heavy"] == []
    assert r["size"] == [64, 48] and r["mode"] == "RGB"
    assert r["info"]["quality"] == 60 and r["info"]["model_id"] == container.parse(rgb_file).model_hex
    # What "light" means is the module list above; the times are printed, not asserted (a timed
    # test fails on a busy machine): ~50 ms to import, a few ms to open when idle.
    print(f"import {r['import_s'] * 1e3:.0f} ms, open {r['open_s'] * 1e3:.1f} ms")


def test_first_decode_prints_no_third_party_warning(tmp_path: Path, rgb_file: bytes, model: Path) -> None:
    """A fresh process's first decode imports torch and compressai; a script that only opens a
    picture must not see their warnings under Python's default filters (compressai's torch_geometric
    calls torch.jit.script, which torch >= 2.10 flags with a FutureWarning)."""
    path = tmp_path / "a.sdc"
    path.write_bytes(rgb_file)
    script = f"""
import pillow_codec
from PIL import Image
pillow_codec.register_sodec_opener(model={str(model)!r})
with Image.open({str(path)!r}) as im:
    im.load()
print(im.size)
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "(64, 48)"
    assert "Warning" not in out.stderr, out.stderr[-2000:]


class CountingIO(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, n: int | None = -1) -> bytes:
        out = super().read(n)
        self.bytes_read += len(out)
        return out


def test_open_reads_only_the_header(rgb_file: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugin, "HEADER_PROBE", 48)
    fp = CountingIO(rgb_file)
    with Image.open(fp) as im:
        assert (im.format, im.size, im.mode) == ("SODEC", (64, 48), "RGB")
        assert im.format_description and im.get_format_mimetype() == "image/x-sodec"
        assert fp.bytes_read < len(rgb_file)
        assert im.tile  # not loaded
        assert im.info["rate_position"] == 19  # quality 60
        assert im.info["bpp"] == pytest.approx(8 * len(rgb_file) / (64 * 48))
        assert im.info["model"].startswith("tiny-fidelity@")


def test_open_does_not_decode(rgb_file: bytes) -> None:
    """A file whose body is destroyed still opens (nothing is decoded), and fails at load."""
    header_end = len(rgb_file) // 2
    broken = rgb_file[:header_end] + bytes(len(rgb_file) - header_end)
    with Image.open(io.BytesIO(broken)) as im:
        assert im.size == (64, 48)
        with pytest.raises(OSError, match="truncated or corrupt"):
            im.load()


def test_big_metadata_still_opens_without_decoding(model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugin, "HEADER_PROBE", 16)
    data = to_bytes(photo(2), xmp=b"<x:xmpmeta>" + b" " * 5000 + b"</x:xmpmeta>")
    with Image.open(io.BytesIO(data)) as im:
        assert im.info["xmp"].startswith(b"<x:xmpmeta>") and im.tile


def test_hopeless_header_is_rejected_without_reading_the_file(rgb_file: bytes,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugin, "HEADER_PROBE", 48)
    data = bytearray(rgb_file + bytes(100_000))
    data[6] = 0xFF  # the flags byte (after magic, version and two one-byte varints)
    fp = CountingIO(bytes(data))
    with pytest.raises(UnidentifiedImageError):
        Image.open(fp)
    assert fp.bytes_read < 10_000  # Pillow's other plugins probe the start too; the 100 KB body is never read


# ---- round trips ---------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "LA"])
def test_round_trip_matches_engine(mode: str, model: Path, tmp_path: Path) -> None:
    src = photo(3, (48, 40)).convert("L" if mode.startswith("L") else "RGB")
    if mode in ("RGBA", "LA"):
        src.putalpha(ramp_alpha(src.size))
    path = tmp_path / "out.sdc"
    src.save(path, quality=50)
    data = path.read_bytes()
    assert data == sodec_plugin.compress(src, model=str(model), quality=50)
    with Image.open(path) as im:
        assert im.format == "SODEC" and im.mode == mode and im.size == src.size
        im.load()
        assert im.fp is None  # the file is closed after loading, as for Pillow's own plugins
        assert_image_equal(im, sodec_plugin.decompress(data, model=str(model)))
        if mode in ("RGBA", "LA"):
            assert_image_equal(im.getchannel("A"), src.getchannel("A"))


def test_save_to_file_object_and_reopen(model: Path) -> None:
    src = photo(4)
    buf = io.BytesIO()
    src.save(buf, "SODEC")
    buf.seek(0)
    with Image.open(buf, formats=["SODEC"]) as im:
        assert im.size == src.size and im.info["rate_position"] == 24  # quality 75, the default
        im.load()
    # an opened SODEC image saves again (its pixels are loaded first)
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        assert Image.open(io.BytesIO(to_bytes(im))).size == src.size


def test_model_and_quality_from_the_opener(model: Path) -> None:
    pillow_codec.register_sodec_opener(quality=10)
    with Image.open(io.BytesIO(to_bytes(photo(5)))) as im:
        assert im.info["rate_position"] == 3  # quality 10
    with Image.open(io.BytesIO(to_bytes(photo(5), quality=None))) as im:  # None: the default
        assert im.info["rate_position"] == 3  # quality 10


# (save quality, rate position, info["quality"]) on the tiny model's 33 positions: quality 1..100 maps
# linearly onto positions 0..32 (rounded), and info["quality"] is the quality whose position it is.
QUALITY_LADDER = [(1, 0, 1), (33, 10, 32), (75, 24, 75), (100, 32, 100), (42.5, 13, 41)]


@pytest.mark.parametrize(("quality", "position", "info_quality"), QUALITY_LADDER)
def test_quality_mapping_and_info(quality: float, position: int, info_quality: int) -> None:
    with Image.open(io.BytesIO(to_bytes(photo(6), quality=quality))) as im:
        assert im.info["rate_position"] == position
        assert im.info["quality"] == info_quality
        assert codec.quality_to_position(im.info["quality"], TINY_MAX_POSITION) == position


def test_rate_rises_with_quality() -> None:
    src = photo(7, (128, 96))
    sizes = [len(to_bytes(src, quality=q)) for q in (1, 50, 100)]
    assert sizes[0] < sizes[1] < sizes[2]


def test_quality_absent_when_the_model_is_unknown(rgb_file: bytes) -> None:
    plugin._defaults.clear()
    with Image.open(io.BytesIO(rgb_file)) as im:
        assert "quality" not in im.info
        assert im.info["rate_position"] == 19  # quality 60
        assert im.info["model"].startswith("tiny-fidelity@")


def test_quality_info_from_a_loaded_model(rgb_file: bytes, model: Path) -> None:
    pillow_codec.register_sodec_opener(model=sodec_plugin.load_model(str(model)))
    with Image.open(io.BytesIO(rgb_file)) as im:
        assert im.info["quality"] == 60
        im.load()


# ---- save errors leave nothing behind ------------------------------------------------------------
def assert_save_refused(tmp_path: Path, match: str, **params: object) -> None:
    """Saving with `params` raises ValueError (matching `match`) and leaves no file and no bytes."""
    path = tmp_path / "bad.sdc"
    with pytest.raises(ValueError, match=match):
        photo().save(path, **params)
    assert not path.exists()
    buf = io.BytesIO()
    with pytest.raises(ValueError, match=match):
        photo().save(buf, "SODEC", **params)
    assert buf.getvalue() == b""


@pytest.mark.parametrize("quality", [0, 101, -5, "50", float("nan"), True, [75]])
def test_bad_quality_raises_and_writes_nothing(quality: object, tmp_path: Path) -> None:
    assert_save_refused(tmp_path, "quality", quality=quality)


@pytest.mark.parametrize("effort", [-1, 10, 1.5, "2", True])
def test_bad_effort_raises_and_writes_nothing(effort: object, tmp_path: Path) -> None:
    path = tmp_path / "bad.sdc"
    with pytest.raises(ValueError, match="effort"):
        photo().save(path, effort=effort)
    assert not path.exists()
    with pytest.raises(ValueError, match="effort"):
        pillow_codec.register_sodec_opener(effort=effort)


def test_effort_from_save_and_opener(model: Path) -> None:
    im = photo(3, (96, 64))
    searched = to_bytes(im, effort=1)
    assert searched == sodec_plugin.compress(im, model=str(model), quality=75, effort=1)
    assert searched != to_bytes(im)
    pillow_codec.register_sodec_opener(effort=1)
    assert to_bytes(im) == searched
    assert to_bytes(im, effort=0) != searched


def test_failed_encode_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "fail.sdc"
    with pytest.raises(OSError, match="no SODEC model"):
        photo().save(path, model=str(tmp_path / "no-such-model"))
    assert not path.exists()


def test_unsupported_mode_raises_value_error() -> None:
    with pytest.raises(ValueError, match="mode"):
        plugin.storable(types.SimpleNamespace(mode="BGR;24", info={}))  # type: ignore[arg-type]


# ---- resampling -----------------------------------------------------------------------------------
# The half-size rung of the ladder needs a shorter side of rates.LADDERS[-1][0] = 320 px: the "auto" test
# uses the smallest such image, at a quality below its full-size quality; forced factors work at any size.
LADDER_SIZE = (rates.LADDERS[-1][0], rates.LADDERS[-1][0])
BAD_RESAMPLING = [0, 3, 16, "2", 2.5, True, "none"]


def test_forced_half_size_round_trips(model: Path) -> None:
    """resampling=2 on an image too small for the ladder: coded at 25x20 (ceil), read back at 49x40 RGBA with
    its alpha exact, the engine's own decode; info says the factor and the quality of its point."""
    src = photo(2, (49, 40)).convert("RGBA")
    src.putalpha(ramp_alpha(src.size))
    data = to_bytes(src, quality=40, resampling=2)
    assert data == sodec_plugin.compress(src, model=str(model), quality=40, resampling=2)
    f = container.parse(data)
    assert (f.resample, f.coded_size) == (2, (25, 20))
    with Image.open(io.BytesIO(data)) as im:
        assert (im.size, im.mode, im.info["resampling"]) == ((49, 40), "RGBA", 2)
        # no ladder at this size: the plain mapping's quality, which codes at the same point
        assert im.info["quality"] == codec.position_to_quality(f.rate_position, TINY_MAX_POSITION) == 41
        assert rates.coding_point(im.info["quality"], TINY_MAX_POSITION, width=49, height=40,
                                  resampling=2) == (2, f.rate_position)
        im.load()
        assert_image_equal(im, sodec_plugin.decompress(data, model=str(model)))
        assert_image_equal(im.getchannel("A"), src.getchannel("A"))


def test_auto_resampling_reads_back_the_quality_on_the_ladder() -> None:
    """A low quality codes at half size; info["quality"] is the ladder's quality of that point (not the plain
    mapping of its position), and saving again at it writes the same file."""
    src = photo(5, LADDER_SIZE, left=0, top=0)
    data = to_bytes(src, quality=20)
    f = container.parse(data)
    assert (f.resample, f.coded_size) == (2, (LADDER_SIZE[0] // 2, LADDER_SIZE[1] // 2))
    with Image.open(io.BytesIO(data)) as im:
        assert im.info["resampling"] == 2
        quality = im.info["quality"]
    width, height = LADDER_SIZE
    assert quality == rates.point_quality(2, f.rate_position, TINY_MAX_POSITION, width=width, height=height)
    assert quality != codec.position_to_quality(f.rate_position, TINY_MAX_POSITION)
    assert rates.coding_point(quality, TINY_MAX_POSITION, width=width, height=height) == (2, f.rate_position)
    assert to_bytes(src, quality=quality) == data
    assert to_bytes(src, quality=20, resampling="auto") == data


def test_full_size_files_say_factor_one(rgb_file: bytes) -> None:
    with Image.open(io.BytesIO(rgb_file)) as im:
        assert im.info["resampling"] == 1 and im.info["quality"] == 60


@pytest.mark.parametrize("resampling", BAD_RESAMPLING)
def test_bad_resampling_raises_and_writes_nothing(resampling: object, tmp_path: Path) -> None:
    assert_save_refused(tmp_path, "resampling", resampling=resampling)
    with pytest.raises(ValueError, match="resampling"):
        pillow_codec.register_sodec_opener(resampling=resampling)


def test_resampling_from_save_and_opener() -> None:
    pillow_codec.register_sodec_opener(resampling=4)
    assert plugin.options()["resampling"] == 4
    assert container.parse(to_bytes(photo(4))).resample == 4
    assert container.parse(to_bytes(photo(4), resampling=1)).resample == 1


# ---- metadata ------------------------------------------------------------------------------------
def icc_bytes() -> bytes:
    try:
        from PIL import ImageCms

        return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    except ImportError:
        return b"\0\0\2\0fake icc profile" * 8


def exif_with(**tags: object) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = tags.get("make", "SODEC camera")
    exif[0x0112] = tags.get("orientation", 1)
    return exif


def test_metadata_round_trip() -> None:
    icc, xmp = icc_bytes(), b'<?xpacket begin=""?><x:xmpmeta xmlns:x="adobe:ns:meta/"/>'
    data = to_bytes(photo(8), icc_profile=icc, exif=exif_with(), xmp=xmp.decode())
    with Image.open(io.BytesIO(data)) as im:
        assert im.info["icc_profile"] == icc and im.info["xmp"] == xmp
        assert im.getexif()[0x010F] == "SODEC camera"
        im.load()
        assert im.info["icc_profile"] == icc and im.getexif()[0x0112] == 1


def test_metadata_falls_back_to_info_and_can_be_dropped() -> None:
    src = photo(9)
    src.info.update(icc_profile=icc_bytes(), exif=exif_with(make="from info").tobytes(), xmp=b"<xmp/>")
    with Image.open(io.BytesIO(to_bytes(src))) as im:
        assert im.info["icc_profile"] == src.info["icc_profile"] and im.info["xmp"] == b"<xmp/>"
        assert im.getexif()[0x010F] == "from info"
    with Image.open(io.BytesIO(to_bytes(src, exif=b"", icc_profile=None, xmp=""))) as im:
        assert not {"exif", "icc_profile", "xmp"} & set(im.info)
    with Image.open(io.BytesIO(to_bytes(src, exif=exif_with(make="explicit")))) as im:
        assert im.getexif()[0x010F] == "explicit"
    with pytest.raises(ValueError, match="exif"):
        to_bytes(src, exif=12)


def test_metadata_survives_resave(tmp_path: Path) -> None:
    src, icc = photo(10), icc_bytes()  # (a created profile holds its creation time: make it once)
    src.save(tmp_path / "a.sdc", icc_profile=icc)
    with Image.open(tmp_path / "a.sdc") as im:
        im.save(tmp_path / "b.sdc")
    with Image.open(tmp_path / "b.sdc") as im:
        assert im.info["icc_profile"] == icc


# ---- modes ---------------------------------------------------------------------------------------
def _palette_with_transparency() -> Image.Image:
    im = photo(11).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    im.info["transparency"] = 0
    return im


def _rgba_palette() -> Image.Image:
    im = Image.new("P", (40, 24))
    im.putpalette([255, 0, 0, 0, 0, 255, 0, 255] + [0, 0, 0, 255] * 254, "RGBA")
    im.paste(1, (0, 0, 20, 24))
    return im


def _i16() -> Image.Image:
    im = Image.fromarray((np.arange(40 * 24, dtype=np.uint16) * 60).reshape(24, 40))
    assert im.mode == "I;16"
    return im


CONVERSIONS = {
    "1": (lambda: photo(12).convert("1"), "L"),
    "P": (lambda: photo(12).convert("P"), "RGB"),
    "P+transparency": (_palette_with_transparency, "RGBA"),
    "P+RGBA palette": (_rgba_palette, "RGBA"),
    "PA": (lambda: photo(12).convert("PA"), "RGBA"),
    "I;16": (_i16, "L"),
    "I": (lambda: photo(12).convert("I"), "L"),
    "F": (lambda: photo(12).convert("F"), "L"),
    "CMYK": (lambda: photo(12).convert("CMYK"), "RGB"),
    "YCbCr": (lambda: photo(12).convert("YCbCr"), "RGB"),
    "LAB": (lambda: photo(12).convert("LAB"), "RGB"),
    "HSV": (lambda: photo(12).convert("HSV"), "RGB"),
    "RGBX": (lambda: photo(12).convert("RGBX"), "RGB"),
    "RGBa": (lambda: photo(12).convert("RGBA").convert("RGBa"), "RGBA"),
    "La": (lambda: photo(12).convert("LA").convert("La"), "LA"),
}


@pytest.mark.parametrize("name", list(CONVERSIONS))
def test_modes_convert_as_documented(name: str) -> None:
    make, stored = CONVERSIONS[name]
    src = make()
    with Image.open(io.BytesIO(to_bytes(src))) as im:
        assert im.mode == stored and im.size == src.size
        im.load()
        if stored in ("RGBA", "LA"):
            assert_image_equal(im.getchannel("A"), src.convert(stored).getchannel("A"))


def test_rgba_palette_keeps_alpha_exactly() -> None:
    src = _rgba_palette()
    with Image.open(io.BytesIO(to_bytes(src))) as im:
        alpha = np.asarray(im.getchannel("A"))
    assert (alpha[:, :20] == 255).all() and (alpha[:, 20:] == 0).all()


# ---- draft, reduce, thumbnail --------------------------------------------------------------------
@pytest.fixture(scope="module")
def big_file(model: Path) -> bytes:
    return sodec_plugin.compress(photo(13, (128, 96)), model=str(model), quality=80)


@pytest.fixture
def decode_modes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the decode path of every engine decode."""
    seen: list[str] = []
    real = codec.decode_image

    def spy(m, y_hat, z_hat, mode="auto", *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(mode)
        return real(m, y_hat, z_hat, mode, *args, **kwargs)

    monkeypatch.setattr(codec, "decode_image", spy)
    return seen


def test_draft_decodes_small_through_the_fidelity_path(big_file: bytes, model: Path,
                                                       decode_modes: list[str]) -> None:
    pillow_codec.register_sodec_opener(decode_mode="diffusion")  # the tiny model has none: only draft can work
    fidelity = sodec_plugin.decompress(big_file, model=str(model), mode="fidelity")
    decode_modes.clear()
    with Image.open(io.BytesIO(big_file)) as im:
        assert im.draft(None, (30, 20)) == ("RGB", (0, 0, 32.0, 24.0))
        assert im.size == (32, 24)
        assert im.draft(None, (8, 8)) is None  # once only, as JPEG
        im.load()
        assert_image_equal(im, fidelity.reduce(4))
        assert im.draft(None, (8, 8)) is None  # no effect once loaded
    assert decode_modes == ["fidelity"]
    with Image.open(io.BytesIO(big_file)) as im:
        with pytest.raises(ValueError, match="no diffusion path"):
            im.load()


@pytest.mark.parametrize(("request_size", "expected"), [((64, 48), (64, 48)), ((65, 10), (128, 96)),
                                                        ((16, 12), (16, 12)), ((1, 1), (16, 12)),
                                                        ((500, 500), (128, 96))])
def test_draft_never_goes_below_the_request(big_file: bytes, request_size: tuple[int, int],
                                            expected: tuple[int, int]) -> None:
    with Image.open(io.BytesIO(big_file)) as im:
        result = im.draft("RGB", request_size)
        # Only a request at least as large as the image leaves the full decode path alone.
        assert im.size == expected and (result is None) == (request_size == (500, 500))
        im.load()
        assert im.size == expected


@pytest.mark.parametrize(("box", "size"), [((20, 20), (20, 15)), ((48, 48), (48, 36))])
def test_thumbnail_uses_draft(big_file: bytes, decode_modes: list[str], box: tuple[int, int],
                              size: tuple[int, int]) -> None:
    # (48, 48): Pillow asks draft for twice the box, more than half the image: no 1/2 scale, but
    # still the fidelity path rather than the full decoder.
    with Image.open(io.BytesIO(big_file)) as im:
        im.thumbnail(box)
        assert im.size == size
    assert decode_modes == ["fidelity"]


def test_reduce_before_load_is_a_fidelity_thumbnail(big_file: bytes, model: Path) -> None:
    fidelity = sodec_plugin.decompress(big_file, model=str(model), mode="fidelity")
    with Image.open(io.BytesIO(big_file)) as im:
        small = im.reduce(2)
        assert_image_equal(small, fidelity.reduce(2))
        assert small.info == im.info  # metadata kept, as Pillow's reduce does
        assert_image_equal(im.reduce((4, 2), (0, 0, 64, 48)), fidelity.reduce((4, 2), (0, 0, 64, 48)))
        assert im.tile  # still not loaded: a later load() gives the full decode
        im.load()
        assert_image_equal(im.reduce(2), sodec_plugin.decompress(big_file, model=str(model)).reduce(2))


# ---- corrupt and truncated files -----------------------------------------------------------------
GARBAGE = {
    "empty": b"",
    "short magic": b"SD",
    "magic only": b"SDC",
    "version only": b"SDC\x01",
    "bad version": b"SDCX" + bytes(40),
    "png signature": b"\x89PNG\r\n\x1a\n" + bytes(40),
    "endless varint": b"SDC\x01\x80\x80\x80\x80\x80\x00" + bytes(20),
    "bad flags": b"SDC\x01\x00\x00\xf0" + bytes(20),
}


@pytest.mark.filterwarnings("ignore:image file could not be identified")
@pytest.mark.parametrize("data", list(GARBAGE.values()), ids=list(GARBAGE))
def test_garbage_is_unidentified(data: bytes) -> None:
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(data))


def test_unknown_version_is_unidentified_with_a_reason(rgb_file: bytes) -> None:
    data = rgb_file[:3] + b"\x07" + rgb_file[4:]
    with pytest.warns(UserWarning, match="SODEC version 7"), pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(data))


def test_unknown_critical_chunk_is_unidentified(model: Path) -> None:
    f = container.parse(sodec_plugin.compress(photo(), model=str(model)))
    f.chunks[Chunk.ICC] = b"icc"
    data = container.pack(f)
    pos = data.index(b"\x01\x03icc")  # the ICC chunk: type 1, length 3
    hostile = with_crc(data[:pos] + b"\x06" + data[pos + 1:-4])
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(hostile))


def header_length(data: bytes) -> int:
    return next(n for n in range(4, len(data)) if _parses(data[:n]))


def _parses(prefix: bytes) -> bool:
    try:
        container.parse(prefix, verify=False, header_only=True)
        return True
    except container.FormatError:
        return False


def _outcome(data: bytes) -> str:
    """'unidentified', 'bomb', 'load-error' or 'loaded' (the last means a damaged file gave pixels)."""
    try:
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        return "unidentified"
    except Image.DecompressionBombError:
        return "bomb"
    with im:
        try:
            im.load()
        except Image.DecompressionBombError:
            return "bomb"
        except OSError:
            return "load-error"
        return "loaded"


def test_every_truncation_and_bit_flip_fails_cleanly(rgb_file: bytes) -> None:
    """No damaged variant crashes, raises anything unexpected or yields an image."""
    variants = [rgb_file[:n] for n in range(len(rgb_file))]
    variants += [rgb_file[:i] + bytes([rgb_file[i] ^ (1 << (i % 8))]) + rgb_file[i + 1:] for i in range(len(rgb_file))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DecompressionBombWarning from flipped sizes
        outcomes = [_outcome(v) for v in variants]
    assert "loaded" not in outcomes
    n = header_length(rgb_file)
    assert outcomes[:n] == ["unidentified"] * n  # a cut header is not an image
    assert outcomes.count("load-error") >= 2 * (len(rgb_file) - n)  # a damaged body is found at load


def test_truncated_file_raises_at_load(rgb_file: bytes) -> None:
    with Image.open(io.BytesIO(rgb_file[: len(rgb_file) - 10])) as im:
        assert im.size == (64, 48)
        with pytest.raises(OSError, match="image file is truncated"):
            im.load()
        with pytest.raises(OSError):  # still not loaded, still failing
            im.load()


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "LA"])
def test_load_truncated_images_gives_flat_gray(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    src = photo(14).convert(mode)
    data = to_bytes(src)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with Image.open(io.BytesIO(data[:-7])) as im:
        im.load()
        assert im.mode == mode and im.size == src.size
        extrema = im.getextrema()
        bands = extrema if isinstance(extrema[0], tuple) else (extrema,)
        colors = len(mode.rstrip("A"))
        assert all(b == (128, 128) for b in bands[:colors]) and all(b == (255, 255) for b in bands[colors:])
    with Image.open(io.BytesIO(data[:-7])) as im:
        im.thumbnail((16, 16))
        assert im.size == (16, 12)


def _rebuilt(data: bytes, **changes: object) -> bytes:
    f = container.parse(data)
    for key, value in changes.items():
        setattr(f, key, value)
    return container.pack(f)


HOSTILE = {
    "y stream too long": lambda f: {"y_stream": f.y_stream + bytes(100000)},
    "rate position past the model": lambda f: {"rate_position": 200},
    "RGBA without an alpha plane": lambda f: {"mode": "RGBA"},
    "alpha plane not a PNG": lambda f: {"mode": "LA", "chunks": {Chunk.ALPHA: b"\x89PNG\r\n\x1a\nnonsense"}},
    "alpha plane of the wrong size": lambda f: {"mode": "LA", "chunks": {Chunk.ALPHA: _png(Image.new("L", (3, 3)))}},
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_files_with_valid_checksums_raise_oserror(case: str, rgb_file: bytes) -> None:
    data = _rebuilt(rgb_file, **HOSTILE[case](container.parse(rgb_file)))
    with Image.open(io.BytesIO(data)) as im, pytest.raises(OSError):
        im.load()


def test_random_streams_with_valid_checksums(rgb_file: bytes) -> None:
    """The coder stays in bounds whatever the streams say; any result has the header's geometry."""
    f = container.parse(rgb_file)
    rng = np.random.default_rng(0)
    for _ in range(8):
        z = rng.integers(0, 256, len(f.z_stream), dtype=np.uint8).tobytes()
        y = rng.integers(0, 256, len(f.y_stream), dtype=np.uint8).tobytes()
        with Image.open(io.BytesIO(_rebuilt(rgb_file, z_stream=z, y_stream=y))) as im:
            try:
                im.load()
            except OSError:
                continue
            assert (im.size, im.mode) == ((64, 48), "RGB")


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def test_file_from_another_model_raises_oserror(rgb_file: bytes, tmp_path: Path) -> None:
    from sodec_plugin.testing import save_tiny_model

    other = save_tiny_model(tmp_path / "other", diffusion=False, seed=1)
    pillow_codec.register_sodec_opener(model=str(other))
    with Image.open(io.BytesIO(rgb_file)) as im:
        assert "quality" not in im.info  # the registered model is not this file's
        with pytest.raises(OSError, match="tiny-fidelity@"):
            im.load()


def test_verify(rgb_file: bytes) -> None:
    with Image.open(io.BytesIO(rgb_file)) as im:
        im.verify()
    damaged = rgb_file[:-20] + bytes([rgb_file[-20] ^ 1]) + rgb_file[-19:]
    with Image.open(io.BytesIO(damaged)) as im, pytest.raises(SyntaxError, match="checksum"):
        im.verify()


# ---- decompression bombs -------------------------------------------------------------------------
def bomb(width: int, height: int) -> bytes:
    return container.pack(SDCFile(width, height, "RGB", b"\0\0\0\0", 0, b"\0" * 8, b"\0" * 8))


def test_bomb_is_refused_at_open() -> None:
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(bomb(1 << 24, 1 << 24)))


def test_bomb_warns_between_one_and_two_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.warns(Image.DecompressionBombWarning):
        Image.open(io.BytesIO(bomb(50, 30))).close()
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(bomb(50, 50)))


@pytest.mark.parametrize("action", ["load", "reduce", "thumbnail"])
def test_bomb_check_at_load_comes_before_any_allocation(action: str, rgb_file: bytes, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    with Image.open(io.BytesIO(rgb_file)) as im:
        im.sodec_options["model"] = str(tmp_path / "missing")  # touching the model would raise OSError instead
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
        with pytest.raises(Image.DecompressionBombError):
            {"load": im.load, "reduce": lambda: im.reduce(2), "thumbnail": lambda: im.thumbnail((8, 8))}[action]()


def test_incremental_parser(rgb_file: bytes, model: Path) -> None:
    """ImageFile.Parser (used by web frameworks) gets the whole file, then decodes it."""
    parser = ImageFile.Parser()
    for i in range(0, len(rgb_file), 7):
        parser.feed(rgb_file[i:i + 7])
    im = parser.close()
    assert im.format == "SODEC"
    assert_image_equal(im, sodec_plugin.decompress(rgb_file, model=str(model)))


def test_formats_argument(rgb_file: bytes) -> None:
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(_png(photo())), formats=["SODEC"])
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(rgb_file), formats=["PNG"])


# ---- options -------------------------------------------------------------------------------------
def test_register_sodec_opener_options(model: Path) -> None:
    with pytest.warns(UserWarning, match="unknown option 'qualty'"):
        pillow_codec.register_sodec_opener(qualty=50)
    assert "qualty" not in plugin.options()
    with pytest.raises(ValueError, match="quality"):
        pillow_codec.register_sodec_opener(quality=0)
    with pytest.raises(ValueError, match="decode_mode"):
        pillow_codec.register_sodec_opener(decode_mode="fast")
    pillow_codec.register_sodec_opener(device="cpu", guidance=0.5)
    assert plugin.options() == {"model": str(model), "device": "cpu", "guidance": 0.5}
    pillow_codec.register_sodec_opener(device=None)
    assert plugin.options() == {"model": str(model), "guidance": 0.5}


def test_per_image_options(rgb_file: bytes, tmp_path: Path) -> None:
    with Image.open(io.BytesIO(rgb_file)) as im:
        im.sodec_options["model"] = str(tmp_path / "missing")
        with pytest.raises(OSError, match="no SODEC model"):
            im.load()
    with Image.open(io.BytesIO(rgb_file)) as im:  # other images keep the defaults
        im.load()


# ---- threads -------------------------------------------------------------------------------------
def test_threads_decode_through_one_shared_model(model: Path) -> None:
    files = [sodec_plugin.compress(photo(15, (48, 32)), model=str(model)),
             sodec_plugin.compress(photo(16, (40, 40)).convert("RGBA"), model=str(model), quality=30)]
    expected = []
    for data in files:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            expected.append(im.copy())
    loads = engine.load_count()
    barrier = threading.Barrier(4)
    results: dict[int, list[bytes]] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            out = []
            for _ in range(3):
                with Image.open(io.BytesIO(files[i % 2])) as im:
                    im.load()
                    out.append(im.tobytes())
            results[i] = out
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(results) == 4
    for i, out in results.items():
        assert all(b == expected[i % 2].tobytes() for b in out)
    assert engine.load_count() == loads  # no thread loaded its own model


def test_nan_quality_rejected_like_the_engine() -> None:
    for q in (0, 101, float("nan"), True, "1"):
        with pytest.raises(ValueError):
            plugin.check_quality(q)
        with pytest.raises(ValueError):
            codec.quality_to_position(q, TINY_MAX_POSITION)
    for q in (1, 100, 50.5):
        plugin.check_quality(q)
