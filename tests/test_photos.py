"""The data step's image functions: perceptual hash, JPEG quality estimate, de-duplication (no mirrors needed)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from sodec_plugin.train.photos import (
    DUPLICATE_DISTANCE,
    estimate_jpeg_quality,
    find_duplicate,
    fit_long_side,
    hamming,
    phash,
    phashes,
)
from tests.conftest import KODAK


def _photo(index: int) -> Image.Image:
    path = KODAK / f"kodim{index:02d}.png"
    if path.exists():
        with Image.open(path) as im:
            return im.convert("RGB")
    # Synthetic stand-in: smooth random field, different per index (the Kodak folder is optional).
    rng = np.random.default_rng(index)
    small = rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((768, 512), Image.Resampling.BICUBIC)


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf)


def test_phash_survives_resize_and_recompression() -> None:
    im = _photo(5)
    h = phash(im)
    assert hamming(h, phash(_jpeg(im.resize((im.width // 3, im.height // 3), Image.Resampling.BILINEAR), 40))) <= 4
    assert hamming(h, phash(_jpeg(im, 20))) <= 4


def test_phash_separates_different_photos() -> None:
    hashes = [phash(_photo(i)) for i in (1, 5, 8, 13, 20, 23)]
    distances = [hamming(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1 :]]
    assert min(distances) > DUPLICATE_DISTANCE


@pytest.mark.parametrize("quality", [50, 95])
def test_jpeg_quality_estimate(quality: int) -> None:
    assert abs(estimate_jpeg_quality(_jpeg(_photo(3), quality)) - quality) <= 3


def test_jpeg_quality_is_none_for_png() -> None:
    buf = io.BytesIO()
    _photo(3).save(buf, "PNG")
    assert estimate_jpeg_quality(Image.open(buf)) is None


def test_find_duplicate_finds_resized_and_flipped_copies_only() -> None:
    known = [(f"kodim{i:02d}", phash(_photo(i))) for i in (1, 2, 3, 4)]
    copy = fit_long_side(_photo(3), 300)
    assert find_duplicate(phashes(copy), known)[0] == "kodim03"
    flipped = ImageOps.mirror(_photo(2))
    assert find_duplicate(phashes(flipped), known)[0] == "kodim02"
    assert find_duplicate(phashes(_photo(19)), known) is None


def test_fit_long_side_never_upscales() -> None:
    im = Image.new("RGB", (300, 200))
    assert fit_long_side(im, 2560).size == (300, 200)
    assert fit_long_side(Image.new("RGB", (6000, 4000)), 2560).size == (2560, 1707)


def test_the_rejected_by_eye_table_names_known_sources_and_valid_entries(tmp_path):
    from sodec_plugin.train.photos import REJECTED_BY_EYE, SOURCES, load_rejected_by_eye

    assert set(REJECTED_BY_EYE) <= {s.name for s in SOURCES}
    entries = [n for reasons in REJECTED_BY_EYE.values() for names in reasons.values() for n in names]
    assert len(entries) == len(set(entries)) > 0
    assert all("." in n or (len(n) >= 8 and all(c in "0123456789abcdef" for c in n)) for n in entries)
    bad = tmp_path / "bad.tsv"
    bad.write_text("source\treason\tentry\tnote\ncid22\t\tx.png\t\n")
    with pytest.raises(ValueError, match="bad.tsv:2"):
        load_rejected_by_eye(bad)
