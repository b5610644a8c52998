"""compress/decompress on tiny models and real Kodak crops: sizes, modes, metadata, tiles, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import sodec_plugin as sp
from sodec_plugin import codec
from sodec_plugin.container import FormatError
from tests.conftest import kodak_crop


@pytest.mark.parametrize("size", [(1, 1), (17, 33), (65, 129), (200, 64)])
def test_any_size_round_trips_without_resizing(tiny_fidelity, size):
    im = kodak_crop(3, (0, 0, *size))
    data = sp.compress(im, model=str(tiny_fidelity))
    out = sp.decompress(data, model=str(tiny_fidelity))
    assert out.size == size and out.mode == "RGB"
    h = sp.read_header(data)
    assert (h["width"], h["height"], h["file_size"]) == (*size, len(data))


def test_rate_rises_with_quality(tiny_fidelity):
    im = kodak_crop(5, (0, 0, 256, 256))
    sizes = [len(sp.compress(im, model=str(tiny_fidelity), quality=q)) for q in (1, 50, 100)]
    assert sizes[0] < sizes[1] < sizes[2]


@pytest.mark.parametrize("q", [0, 101, "50", float("nan"), True])
def test_bad_quality(tiny_fidelity, q):
    with pytest.raises(ValueError):
        sp.compress(kodak_crop(), model=str(tiny_fidelity), quality=q)


def test_modes_and_exact_alpha(tiny_fidelity):
    rgb = kodak_crop(7, (0, 0, 96, 80))
    alpha = Image.fromarray((np.arange(96 * 80) % 251).reshape(80, 96).astype(np.uint8), "L")
    for mode in ("RGBA", "LA"):
        im = rgb.convert(mode[:-1])
        im.putalpha(alpha)
        out = sp.decompress(sp.compress(im, model=str(tiny_fidelity)), model=str(tiny_fidelity))
        assert out.mode == mode
        assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(alpha))
    out = sp.decompress(sp.compress(rgb.convert("L"), model=str(tiny_fidelity)), model=str(tiny_fidelity))
    assert out.mode == "L"


def test_other_modes_convert_as_documented():
    assert codec.normalize_mode(Image.new("P", (4, 4))).mode == "RGB"
    p = Image.new("P", (4, 4))
    p.info["transparency"] = 0
    assert codec.normalize_mode(p).mode == "RGBA"
    assert codec.normalize_mode(Image.new("CMYK", (4, 4))).mode == "RGB"
    i16 = Image.fromarray(np.full((4, 4), 65535, np.uint16))
    assert np.asarray(codec.normalize_mode(i16)).max() == 255
    assert codec.normalize_mode(Image.new("1", (4, 4))).mode == "L"
    with pytest.raises(ValueError):
        codec.to_pil(np.zeros((4, 4, 5), np.uint8))


def test_numpy_and_torch_inputs_match_pil(tiny_fidelity):
    im = kodak_crop(9, (0, 0, 64, 64))
    arr = np.asarray(im)
    t = torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255
    a = sp.compress(im, model=str(tiny_fidelity))
    assert sp.compress(arr, model=str(tiny_fidelity)) == a
    assert sp.compress(t, model=str(tiny_fidelity)) == a


def test_metadata_round_trip(tiny_fidelity):
    im = kodak_crop()
    data = sp.compress(im, model=str(tiny_fidelity), icc_profile=b"ICC!", exif=b"Exif\x00\x00MM", xmp=b"<x/>")
    out = sp.decompress(data, model=str(tiny_fidelity))
    assert (out.info["icc_profile"], out.info["exif"], out.info["xmp"]) == (b"ICC!", b"Exif\x00\x00MM", b"<x/>")


def test_wrong_model_is_refused_by_name(tiny_fidelity, tmp_path):
    from sodec_plugin.testing import save_tiny_model

    other = save_tiny_model(tmp_path / "other", diffusion=False, seed=1)
    data = sp.compress(kodak_crop(), model=str(tiny_fidelity))
    with pytest.raises(codec.ModelMismatchError, match="tiny-fidelity@"):
        sp.decompress(data, model=str(other))


def test_corrupt_file_is_a_clean_error(tiny_fidelity):
    data = bytearray(sp.compress(kodak_crop(), model=str(tiny_fidelity)))
    data[-6] ^= 0x10
    with pytest.raises(FormatError):
        sp.decompress(bytes(data), model=str(tiny_fidelity))


def test_decompression_bomb_is_refused_before_decoding(tiny_fidelity, monkeypatch):
    data = sp.compress(kodak_crop(), model=str(tiny_fidelity))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(Image.DecompressionBombError):
        sp.decompress(data, model=str(tiny_fidelity))


def test_tiled_fidelity_decode_equals_untiled(tiny_fidelity):
    im = kodak_crop(11, (0, 0, 512, 384))
    data = sp.compress(im, model=str(tiny_fidelity))
    whole = np.asarray(sp.decompress(data, model=str(tiny_fidelity), tile=64)).astype(int)
    tiled = np.asarray(sp.decompress(data, model=str(tiny_fidelity), tile=1)).astype(int)  # 24-cell tiles
    assert np.abs(whole - tiled).max() <= 1


def test_tiled_decode_of_the_bundled_default_equals_untiled():
    """The default model's latent blocks widen its receptive field past the ~3 cells the tile
    overlap was set for: its tiles must still decode to the untiled image (to rounding)."""
    from tests.make_golden import SOURCE  # the example photo the package ships

    with Image.open(SOURCE) as im:
        data = sp.compress(im.convert("RGB"), quality=50)  # 48 x 32 latent cells
    whole = np.asarray(sp.decompress(data, tile=64)).astype(int)
    tiled = np.asarray(sp.decompress(data, tile=1)).astype(int)  # 24-cell tiles, 8 cells overlap
    assert np.abs(whole - tiled).max() <= 1


def test_diffusion_path_end_to_end_on_cpu(tiny_full):
    m = sp.load_model(str(tiny_full), local_files_only=True)
    assert m.has_diffusion
    im = kodak_crop(13, (0, 0, 160, 96))
    data = sp.compress(im, model=m, quality=60)
    outs = {g: np.asarray(sp.decompress(data, model=m, mode="diffusion", guidance=g)) for g in (0.0, 1.0, 2.0)}
    assert all(o.shape == (96, 160, 3) for o in outs.values())
    assert not np.array_equal(outs[0.0], outs[2.0])  # guidance strength reaches the UNet
    fid = sp.decompress(data, model=m, mode="fidelity")
    assert fid.size == (160, 96)
    tiled = sp.decompress(data, model=m, mode="diffusion", tile=4)
    assert tiled.size == (160, 96)


def test_fidelity_only_model_says_it_has_no_diffusion(tiny_fidelity):
    data = sp.compress(kodak_crop(), model=str(tiny_fidelity))
    with pytest.raises(ValueError, match="no diffusion path"):
        sp.decompress(data, model=str(tiny_fidelity), mode="diffusion")


def test_file_of_a_loaded_model_decodes_without_naming_it(tiny_fidelity):
    m = sp.load_model(str(tiny_fidelity))
    data = sp.compress(kodak_crop(), model=m)
    assert sp.decompress(data).size == (192, 128)


def test_model_loaded_under_inference_mode_codes_outside_it(tiny_fidelity, tmp_path, monkeypatch):
    """ComfyUI runs nodes under torch.inference_mode, so a model loaded there has inference
    tensors (no version counters): the engine's speed-ups must still work with them."""
    import shutil

    from sodec_plugin import engine

    folder = tmp_path / "m"
    shutil.copytree(tiny_fidelity, folder)
    monkeypatch.setattr(engine, "_by_key", {})  # loaded fresh here, not shared from an earlier test
    monkeypatch.setattr(engine, "_key_locks", {})
    with torch.inference_mode():
        m = engine.get_model(str(folder))
    assert m.compression.analysis.parameters().__next__().is_inference()
    im = kodak_crop(1, (0, 0, 80, 64))
    data = sp.compress(im, model=m, quality=50)
    with torch.inference_mode():
        inside = np.asarray(sp.decompress(data, model=m))
    assert np.array_equal(np.asarray(sp.decompress(data, model=m)), inside)


def test_icc_profile_of_another_colour_space_is_dropped(tiny_fidelity):
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    rgb = Image.new("RGB", (16, 16), (200, 30, 30))
    out = sp.decompress(sp.compress(rgb, model=str(tiny_fidelity), icc_profile=srgb), model=str(tiny_fidelity))
    assert out.info["icc_profile"] == srgb
    with pytest.warns(UserWarning, match="ICC profile for Lab dropped"):
        data = sp.compress(Image.new("LAB", (16, 16)), model=str(tiny_fidelity), icc_profile=lab)
    assert "icc_profile" not in sp.decompress(data, model=str(tiny_fidelity)).info


def test_a_model_loaded_to_code_builds_compressais_entropy_models_only_when_asked(tiny_fidelity) -> None:
    """optimize=True (how the engine loads) holds the entropy models' tensors instead of building
    compressai's modules: the same state dict, and the same modules once something asks for them."""
    from sodec_plugin.models.sodec import SODECModel

    full = SODECModel.from_folder(tiny_fidelity)
    light = SODECModel.from_folder(tiny_fidelity, optimize=True)
    assert "entropy_bottleneck" not in light.compression._modules
    a, b = full.state_dict(), light.state_dict()
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    eb = light.compression.entropy_bottleneck  # built now, from the held tensors
    assert torch.equal(eb.quantiles, full.compression.entropy_bottleneck.quantiles)
    assert not eb.quantiles.requires_grad and not eb.training
    c = light.state_dict()
    assert sorted(c) == sorted(a) and all(torch.equal(a[k], c[k]) for k in a)
