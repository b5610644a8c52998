"""Resampling: the flags field, the quality ladder (rates.coding_point) and the codec's round trip."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

import sodec_plugin as sp
from sodec_plugin import codec, container, rates
from sodec_plugin.container import FormatError, SDCFile
from tests.conftest import kodak_crop

MAX_POSITION = 128
FLAGS = 7  # the flags byte of _file(): after magic, version and the varints 1000 (2 bytes) and 66
SIZES = [(4000, 3000), (2048, 1365), (768, 512), (481, 321), (319, 800), (200, 200), (1, 1)]


def _file(resample: int) -> SDCFile:
    return SDCFile(width=1001, height=67, mode="RGBA", model_id=b"\x01\x02\x03\x04", rate_position=9,
                   z_stream=b"z" * 5, y_stream=b"y" * 9, chunks={container.Chunk.ICC: b"icc"}, resample=resample)


@pytest.mark.parametrize("factor", container.RESAMPLE_FACTORS)
def test_factor_round_trips_in_the_flags(factor):
    data = container.pack(_file(factor))
    f = container.parse(data)
    coded = (math.ceil(1001 / Fraction(factor)), math.ceil(67 / Fraction(factor)))
    assert f.resample == factor and f.coded_size == coded
    assert data[FLAGS] >> 4 == container.RESAMPLE_FACTORS.index(factor)
    assert (f.width, f.height, f.mode, f.z_stream, f.y_stream) == (1001, 67, "RGBA", b"z" * 5, b"y" * 9)


def test_power_of_two_factors_keep_their_flags():
    """Files of factors 1-8 were written with log2 of the factor in bits 4-5: the index still is."""
    for log2 in range(4):
        assert container.pack(_file(1 << log2))[FLAGS] >> 4 == log2
    two_thirds = container.pack(_file(1.5))
    assert two_thirds[FLAGS] >> 4 == 4 and container.parse(two_thirds).coded_size == (668, 45)


def test_unresampled_files_keep_their_bytes():
    """Factor 1 leaves bits 4-7 zero: the bytes every earlier writer produced."""
    assert container.pack(_file(1))[FLAGS] == container.MODES.index("RGBA") | 0x08


@pytest.mark.parametrize("bits", [0x50, 0x60, 0x70, 0x80, 0xC0])
def test_reserved_flag_bits_are_refused(bits):
    data = bytearray(container.pack(_file(1)))
    data[FLAGS] |= bits
    with pytest.raises(FormatError, match="flags"):
        container.parse(bytes(data), verify=False)


@pytest.mark.parametrize("factor", [0, 3, 16, -2, 1.25])
def test_pack_refuses_other_factors(factor):
    with pytest.raises(ValueError, match="resampling factor"):
        container.pack(_file(factor))


def _ladder(width: int, height: int) -> list[tuple[int, int]]:
    qualities = np.round(np.arange(1.0, 100.001, 0.05), 2)
    return [rates.coding_point(float(q), MAX_POSITION, width=width, height=height) for q in qualities]


@pytest.mark.parametrize("size", SIZES)
def test_ladder_climbs_factor_by_factor(size):
    """Factors only fall and positions only rise within a factor as quality rises; the top stays the
    plain mapping."""
    points = _ladder(*size)
    for (f0, p0), (f1, p1) in zip(points, points[1:], strict=False):
        assert f1 < f0 or (f1 == f0 and p1 >= p0)
    assert points[-1] == (1, MAX_POSITION)
    for q in (74.5, 75, 90):  # the default quality 75 among them: it writes what it wrote before resampling
        assert rates.coding_point(q, MAX_POSITION, width=size[0], height=size[1]) == (
            1, rates.quality_to_position(q, MAX_POSITION))
    assert points[0][1] == 0  # the lowest quality is the lowest position of the first rung


def _full_size_from(width: int, height: int) -> float:
    return next(q / 100 for q in range(100, 10001) if rates.coding_point(q / 100, MAX_POSITION, width=width,
                                                                           height=height)[0] == 1)


def test_ladder_by_image_size():
    for size in ((4000, 3000), (640, 2000)):
        assert {f for f, _ in _ladder(*size)} == {4, 2, 1.5, 1} and _full_size_from(*size) == 74.48
    for size in ((639, 2000), (768, 512), (481, 320)):
        assert {f for f, _ in _ladder(*size)} == {2, 1} and _full_size_from(*size) == 50.5
    assert _full_size_from(319, 800) == 1
    assert _ladder(200, 200) == [(1, rates.quality_to_position(q, MAX_POSITION))
                                 for q in np.round(np.arange(1.0, 100.001, 0.05), 2)]


@pytest.mark.parametrize("size", SIZES)
def test_point_quality_inverts_the_ladder(size):
    width, height = size
    for q in range(1, 101):
        factor, position = rates.coding_point(q, MAX_POSITION, width=width, height=height)
        back = rates.point_quality(factor, position, MAX_POSITION, width=width, height=height)
        assert rates.coding_point(back, MAX_POSITION, width=width, height=height) == (factor, position)


def test_detailed_photos_keep_full_size_where_smooth_ones_code_two_thirds():
    """Below rates.DETAIL_FLOOR_DB of round-trip PSNR the smooth-photo rung's qualities code full size by the
    plain mapping, as every large photo did before the rung; every other quality codes as for a smooth photo,
    both ladders stay monotone, and point_quality reads both back."""
    size, asked = (2560, 1440), []

    def detailed(factor: float) -> float:
        asked.append(factor)
        return rates.DETAIL_FLOOR_DB - 0.01

    qualities = [float(q) for q in np.round(np.arange(1.0, 100.001, 0.05), 2)]
    smooth = [rates.coding_point(q, MAX_POSITION, width=size[0], height=size[1]) for q in qualities]
    rough = [rates.coding_point(q, MAX_POSITION, width=size[0], height=size[1], round_trip_db=detailed)
             for q in qualities]
    assert set(asked) == {1.5}
    rung = [(q, s, r) for q, s, r in zip(qualities, smooth, rough, strict=True) if s != r]
    assert {s[0] for _, s, _ in rung} == {1.5} and {s[1] for _, s, _ in rung} == set(range(96, 113))
    assert all(r == (1, rates.quality_to_position(q, MAX_POSITION)) for q, _, r in rung)
    assert (rung[0][0], rung[-1][0]) == (62.9, 74.45)  # 62.875 up to 74.48, on this 0.05 grid
    for points in (smooth, rough):
        for (f0, p0), (f1, p1) in zip(points, points[1:], strict=False):
            assert f1 < f0 or (f1 == f0 and p1 >= p0)
    for q in range(1, 101):
        for kwargs in ({}, {"round_trip_db": detailed}):
            point = rates.coding_point(q, MAX_POSITION, width=size[0], height=size[1], **kwargs)
            back = rates.point_quality(*point, MAX_POSITION, width=size[0], height=size[1])
            assert rates.coding_point(back, MAX_POSITION, width=size[0], height=size[1], **kwargs) == point
    assert rates.coding_point(70, MAX_POSITION, width=size[0], height=size[1],
                              round_trip_db=lambda f: rates.DETAIL_FLOOR_DB) == rates.coding_point(
        70, MAX_POSITION, width=size[0], height=size[1])


def test_full_size_start_reads_back_as_a_quality_that_codes_it():
    """The plain mapping rounds to whole qualities; at a full-size start that could fall below it."""
    def detailed(factor: float) -> float:
        return 0.0

    for size, start, kwargs in (((2560, 1440), 95, {}), ((2560, 1440), 80, {"round_trip_db": detailed}),
                                ((768, 512), 64, {})):
        q = rates.point_quality(1, start, MAX_POSITION, width=size[0], height=size[1])
        assert rates.coding_point(q, MAX_POSITION, width=size[0], height=size[1], **kwargs) == (1, start)


def test_forced_full_size_below_the_ladder_reads_back_as_the_plain_mapping():
    """A file forced to full size at a low quality (off the ladder) has no full-size start below it."""
    for size in ((2560, 1440), (768, 512)):
        for position in (0, 10, 40):
            assert rates.point_quality(1, position, MAX_POSITION, width=size[0], height=size[1]) == (
                rates.position_to_quality(position, MAX_POSITION))


def test_round_trip_db_tells_smooth_from_detailed():
    flat = Image.new("RGB", (300, 200), (90, 120, 30))
    assert codec.round_trip_db(flat, 1.5) == float("inf")
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8))
    assert codec.round_trip_db(noise, 1.5) < 15
    photo = kodak_crop(2, (0, 0, 330, 322))
    expect = 10 * np.log10(255**2 / np.mean((np.asarray(photo, np.float64) - np.asarray(
        codec.downscaled(photo, 1.5).resize(photo.size, codec.RESAMPLE_FILTER), np.float64)) ** 2))
    assert codec.round_trip_db(photo, 1.5) == pytest.approx(expect, abs=1e-9)


def test_encoder_keeps_detailed_photos_at_full_size_on_the_smooth_rung(tiny_fidelity):
    from sodec_plugin.engine import get_model

    max_position = get_model(str(tiny_fidelity)).cfg.max_rate_position
    ramp = np.linspace(0, 255, 640, dtype=np.float32)
    smooth = Image.fromarray(np.stack([np.add.outer(ramp, ramp) / 2] * 3, -1).astype(np.uint8))
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 256, (640, 640, 3), dtype=np.uint8))
    quality = rates.point_quality(1.5, round(0.8125 * max_position), max_position, width=640, height=640)
    for image, factor in ((smooth, 1.5), (noise, 1)):
        f = container.parse(sp.compress(image, model=str(tiny_fidelity), quality=quality))
        assert (f.resample, f.rate_position) == rates.coding_point(
            quality, max_position, width=640, height=640, round_trip_db=lambda x, im=image: codec.round_trip_db(im, x))
        assert f.resample == factor


def test_a_single_rate_point_model_has_no_ladder():
    assert {rates.coding_point(q, 0, width=4000, height=3000) for q in (1, 30, 99.9, 100)} == {(1, 0)}


def test_forced_factor_keeps_the_plain_mapping():
    for factor in (1, 1.5, 2, 4, 8):
        assert rates.coding_point(30, MAX_POSITION, width=64, height=64, resampling=factor) == (
            factor, rates.quality_to_position(30, MAX_POSITION))
    assert rates.coding_point(30, MAX_POSITION, width=4000, height=3000, resampling="auto") == \
        rates.coding_point(30, MAX_POSITION, width=4000, height=3000)


@pytest.mark.parametrize("bad", [0, 3, "2", 2.5, True, "none"])
def test_bad_resampling_is_refused(tiny_fidelity, bad):
    with pytest.raises(ValueError, match="resampling"):
        sp.compress(kodak_crop(), model=str(tiny_fidelity), quality=10, resampling=bad)


@pytest.mark.parametrize(("resampling", "factor", "coded"), [("auto", 2, (165, 161)), (1.5, 1.5, (220, 215))])
def test_resampled_file_codes_the_downscaled_image(tiny_fidelity, resampling, factor, coded):
    """The streams of a half-size (or 2/3-size) file are those of the Lanczos-downscaled image coded
    at full size, and its decode is that image's decode scaled back up."""
    im = kodak_crop(2, (0, 0, 330, 322))
    data = sp.compress(im, model=str(tiny_fidelity), quality=1, resampling=resampling)
    f = container.parse(data)
    assert (f.resample, f.coded_size, (f.width, f.height)) == (factor, coded, (330, 322))
    small = im.resize(coded, codec.RESAMPLE_FILTER)
    direct = container.parse(sp.compress(small, model=str(tiny_fidelity), quality=1, resampling=1))
    assert (f.z_stream, f.y_stream, f.rate_position) == (direct.z_stream, direct.y_stream, direct.rate_position)
    out = sp.decompress(data, model=str(tiny_fidelity))
    expect = np.asarray(sp.decompress(container.pack(direct), model=str(tiny_fidelity)).resize(
        (330, 322), codec.RESAMPLE_FILTER))
    assert out.size == (330, 322) and np.array_equal(np.asarray(out), expect)
    assert sp.read_header(data)["resampling"] == factor


def test_high_quality_writes_what_it_always_did(tiny_fidelity):
    im = kodak_crop(4, (0, 0, 400, 352))
    assert sp.compress(im, model=str(tiny_fidelity), quality=75) == sp.compress(
        im, model=str(tiny_fidelity), quality=75, resampling=1)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L"])
def test_forced_factor_keeps_mode_and_exact_alpha(tiny_fidelity, mode):
    rgb = kodak_crop(6, (0, 0, 37, 29))
    im = rgb.convert("RGB" if mode.startswith("RGB") else "L")
    if "A" in mode:
        im.putalpha(Image.fromarray((np.arange(37 * 29) % 253).reshape(29, 37).astype(np.uint8), "L"))
    data = sp.compress(im, model=str(tiny_fidelity), quality=40, resampling=8)
    assert container.parse(data).coded_size == (5, 4)
    out = sp.decompress(data, model=str(tiny_fidelity))
    assert out.size == (37, 29) and out.mode == mode
    if "A" in mode:
        assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(im.getchannel("A")))


def test_eval_names_a_forced_factor_and_compare_judges_the_encoder_change(tiny_fidelity, tmp_path):
    """`sodec eval --resampling 4` codes every point at a quarter of the size under its own curve name;
    `sodec compare` then compares the same model's two encoders."""
    from sodec_plugin.engine import get_model
    from sodec_plugin.eval.report import compare_results
    from sodec_plugin.eval.run import run_eval

    folder = tmp_path / "images"
    folder.mkdir()
    kodak_crop(3, (0, 0, 96, 64)).save(folder / "a.png")
    runs = {f: run_eval(folder, model=str(tiny_fidelity), qualities=[20, 60, 100], out_dir=None, baselines=(),
                        progress=False, metrics=("psnr",), cache=None, resampling=f) for f in (1, 4)}
    ident = get_model(str(tiny_fidelity)).identity
    assert [runs[f]["codec_name"] for f in (1, 4)] == [f"{ident} resampling=1", f"{ident} resampling=4"]
    bytes_of = {f: [r["bytes"] for r in runs[f]["rows"]] for f in (1, 4)}
    assert all(a > b for a, b in zip(bytes_of[1], bytes_of[4], strict=True))  # a sixteenth of the pixels
    bd = compare_results(runs[1], runs[4])
    assert {r["baseline"] for r in bd} == {f"{ident} resampling=1"} and len(bd) == 2


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_draft_of_a_resampled_file_scales_once_from_the_coded_size(tiny_fidelity, tmp_path, mode):
    """Pillow's thumbnail of a quarter-size file: the draft is the coded decode scaled once to the draft
    size (no full-size upscale), close to the full decode reduced, and the same through decode_file."""
    import pillow_codec
    from pillow_codec import plugin

    im = kodak_crop(8, (0, 0, 200, 136)).convert(mode)
    data = sp.compress(im, model=str(tiny_fidelity), quality=30, resampling=4)
    path = tmp_path / "x.sdc"
    path.write_bytes(data)
    saved = plugin.options()
    pillow_codec.register_sodec_opener(model=str(tiny_fidelity))
    try:
        with Image.open(path) as opened:
            opened.draft(None, (50, 34))
            assert opened.size == (50, 34)
            opened.load()
            draft = opened.copy()
    finally:
        plugin._defaults.clear()
        plugin._defaults.update(saved)
    f = container.parse(data)
    direct = codec.decode_file(f, model=str(tiny_fidelity), mode="fidelity", size=(50, 34))
    assert draft.mode == mode and np.array_equal(np.asarray(draft), np.asarray(direct))
    coded = codec.decode_file(container.parse(sp.compress(im.convert("RGB").resize(
        f.coded_size, codec.RESAMPLE_FILTER), model=str(tiny_fidelity), quality=30, resampling=1)),
        model=str(tiny_fidelity), mode="fidelity")
    expect = np.asarray(coded.resize((50, 34), codec.RESAMPLE_FILTER))
    assert np.array_equal(np.asarray(draft.convert("RGB")), expect)  # one Lanczos from the coded size
    reduced = np.asarray(sp.decompress(data, model=str(tiny_fidelity)).reduce(4).convert("RGB"), dtype=float)
    assert np.abs(np.asarray(draft.convert("RGB"), dtype=float) - reduced).mean() < 4.0


@pytest.mark.parametrize("size", [(0, 10), (10, 0), (201, 136), (200, 137)])
def test_decode_size_must_fit_the_file(tiny_fidelity, size):
    data = sp.compress(kodak_crop(8, (0, 0, 200, 136)), model=str(tiny_fidelity), quality=30, resampling=4)
    with pytest.raises(ValueError, match="size must be"):
        codec.decode_file(container.parse(data), model=str(tiny_fidelity), size=size)
