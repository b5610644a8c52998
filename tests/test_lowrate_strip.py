"""benchmarks/lowrate_strip.py on a tiny guided model: every tile a 1:1 crop of what it names, one SODEC tile
per --guidance value (all from one file), and without --guidance the strip's columns as before."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sodec_plugin import codec
from sodec_plugin.engine import get_model
from tests.conftest import kodak_crop
from tests.test_guidance_paths import tiny_guided  # noqa: F401  (a fixture)

ROOT = Path(__file__).resolve().parents[1]
SIZE, GAP = 48, 4


@pytest.fixture(scope="module")
def lowrate_strip():
    spec = importlib.util.spec_from_file_location("lowrate_strip", ROOT / "benchmarks" / "lowrate_strip.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("strip") / "photo.png"
    kodak_crop(3, (0, 0, 96, 64)).save(path)
    return path


def _tiles(strip: Image.Image, count: int, label_h: int) -> list[np.ndarray]:
    assert strip.size == (count * SIZE + (count - 1) * GAP, SIZE + label_h)
    a = np.asarray(strip.convert("RGB"))
    return [a[label_h:, i * (SIZE + GAP):i * (SIZE + GAP) + SIZE] for i in range(count)]


def _table(md: Path) -> list[list[str]]:
    rows = [line.strip("|").split("|") for line in md.read_text().splitlines() if line.startswith("| ")]
    return [[c.strip() for c in r] for r in rows[1:]]  # without the header


def test_guidance_tiles_decode_one_file_at_each_value(lowrate_strip, tiny_guided, photo, tmp_path):  # noqa: F811
    out = tmp_path / "guided.png"
    lowrate_strip.main([f"{photo}:40,8", "--model", str(tiny_guided), "--qualities", "50", "--guidance", "0", "1",
                        "--size", str(SIZE), "--out", str(out)])
    tiles = _tiles(Image.open(out), 1 + 2 + len(lowrate_strip.BASELINES), lowrate_strip.LABEL_H)
    image = Image.open(photo).convert("RGB")
    box = (40, 8, 40 + SIZE, 8 + SIZE)
    np.testing.assert_array_equal(tiles[0], np.asarray(image.crop(box)))  # 1:1, no resampling
    model = get_model(str(tiny_guided))
    data = codec.compress(image, model=model, quality=50)
    for tile, g in zip(tiles[1:3], (0.0, 1.0), strict=True):
        np.testing.assert_array_equal(tile, np.asarray(codec.decompress(data, model=model, guidance=g).crop(box)))
    assert not np.array_equal(tiles[1], tiles[2])

    table = _table(out.with_suffix(".md"))
    assert [r[1] for r in table] == ["sodec g=0", "sodec g=1", *lowrate_strip.BASELINES]
    assert table[0][3] == table[1][3] == str(len(data))  # one file, its bytes under both tiles
    assert table[0][5] != table[1][5]  # decoded two ways: two PSNRs
    text = out.with_suffix(".md").read_text()
    assert f"--qualities 50 --guidance 0 1 --size {SIZE}" in text and model.identity in text


def test_without_guidance_one_sodec_tile_and_a_jpeg(lowrate_strip, tiny_guided, photo, tmp_path):  # noqa: F811
    out = tmp_path / "plain.jpg"
    lowrate_strip.main([str(photo), "--model", str(tiny_guided), "--points", "1", "--size", str(SIZE),
                        "--out", str(out)])
    with Image.open(out) as im:
        assert im.format == "JPEG"
        _tiles(im, 1 + 1 + len(lowrate_strip.BASELINES), lowrate_strip.LABEL_H)
    assert [r[1] for r in _table(out.with_suffix(".md"))] == ["sodec", *lowrate_strip.BASELINES]
    assert "g:" not in out.with_suffix(".md").read_text()


def test_a_crop_outside_the_image_is_refused_before_coding(lowrate_strip, photo, tmp_path, capsys):
    with pytest.raises(SystemExit):
        lowrate_strip.main([f"{photo}:80,0", "--size", str(SIZE), "--out", str(tmp_path / "x.png")])
    assert "leaves the 96x64 image" in capsys.readouterr().err
