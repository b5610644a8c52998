"""The packed training subset (a GPU machine's small upload): budget, scales, manifest, and that the
trainer reads it as it would have read the photos."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sodec_plugin.train.data import CropDataset
from sodec_plugin.train.subset import MANIFEST, main, pack


def _photos(folder: Path, sizes: list[tuple[int, int]], seed: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i, (w, h) in enumerate(sizes):
        small = rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)
        Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC).save(folder / f"p{i}.png")
    return folder


@pytest.fixture()
def sources(tmp_path: Path) -> tuple[Path, Path]:
    small = _photos(tmp_path / "small", [(481, 321)] * 6 + [(321, 481)] * 2, seed=1)
    hr = _photos(tmp_path / "hr" / "src", [(2048, 1365), (1536, 2048)], seed=2)
    return small, hr.parent


def _manifest(out: Path) -> list[dict[str, str]]:
    with open(out / MANIFEST, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_pack_fills_its_budget_with_what_the_trainer_would_see(sources, tmp_path):
    small, hr = sources
    out = tmp_path / "pack"
    budget = 400_000
    files = pack(out, budget, small=small, hr=hr, hr_share=0.6, hr_crop=320)
    written = sorted(p for p in out.iterdir() if p.suffix == ".jpg")
    assert [p.name for p in written] == sorted(f.name for f in files)
    sizes = {p.name: p.stat().st_size for p in written}
    assert sum(sizes.values()) <= budget
    hr_bytes = sum(s for n, s in sizes.items() if n.startswith("hr-"))
    small_bytes = sum(s for n, s in sizes.items() if n.startswith("small-"))
    assert 0 < hr_bytes <= 0.6 * budget and 0 < small_bytes <= 0.4 * budget
    # The hr budget is filled to within one crop (they never run out: crops are drawn anew).
    assert 0.6 * budget - hr_bytes < max(s for n, s in sizes.items() if n.startswith("hr-"))
    rows = {r["file"]: r for r in _manifest(out)}
    assert rows.keys() == sizes.keys()
    for name, row in rows.items():
        with Image.open(out / name) as im:
            assert im.format == "JPEG" and im.size == (int(row["width"]), int(row["height"]))
            assert int(row["bytes"]) == sizes[name]
        root = hr if row["kind"] == "hr" else small
        assert (root / row["source"]).is_file()
        if row["kind"] == "hr":
            assert im.size == (320, 320)
        else:  # downscaled as CropDataset does for 256 px crops: 0.75, but never below the crop
            assert im.size in {(384, 256), (256, 384)}
    # Read back as the GPU run reads it (no rescaling): pixels close to what the photos give.
    ds = CropDataset(out, crop=256, downscale=1.0)
    ref = CropDataset(small, crop=256, downscale=0.75)
    first = next(r for r in rows.values() if r["kind"] == "small")
    packed = ds.images[ds.files.index(out / first["file"])].float()
    original = ref.images[ref.files.index(small / first["source"])].float()
    mse = ((packed - original) ** 2).mean().item()
    assert 10 * np.log10(255**2 / mse) > 40


def test_pack_is_repeatable_and_replaces_only_a_pack(sources, tmp_path):
    small, hr = sources
    a, b = tmp_path / "a", tmp_path / "b"
    pack(a, 200_000, small=small, hr=hr, seed=3)
    pack(b, 200_000, small=small, hr=hr, seed=3)
    assert {p.name: p.read_bytes() for p in a.iterdir()} == {p.name: p.read_bytes() for p in b.iterdir()}
    pack(a, 100_000, small=small, seed=4)  # replaces the earlier pack, leaves none of its files
    assert {r["kind"] for r in _manifest(a)} == {"small"}
    assert sorted(p.name for p in a.iterdir()) == sorted([MANIFEST, *(r["file"] for r in _manifest(a))])
    other = tmp_path / "photos"
    other.mkdir()
    (other / "mine.jpg").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="not a pack"):
        pack(other, 100_000, small=small)
    assert (other / "mine.jpg").read_bytes() == b"x"


def test_command_line(sources, tmp_path, capsys):
    small, hr = sources
    assert main(["--out", str(tmp_path / "p"), "--max-mib", "0.2", "--small", str(small), "--hr", str(hr)]) == 0
    out = capsys.readouterr().out
    assert "small:" in out and "hr:" in out and "MiB" in out
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "q"), "--max-mib", "1"])


def test_small_crops_and_a_lower_quality_fit_more_photos(sources, tmp_path):
    """One crop per small photo at quality 90 fits more distinct photos into the same bytes, each an
    exact crop of what CropDataset holds (up to the JPEG error)."""
    small, _ = sources
    budget = 150_000
    whole = pack(tmp_path / "whole", budget, small=small)
    crops = pack(tmp_path / "crops", budget, small=small, small_crop=256, quality=90)
    assert len({f.source for f in crops}) > len({f.source for f in whole})
    assert all((f.width, f.height) == (256, 256) for f in crops)
    ref = CropDataset(small, crop=256, downscale=0.75)
    f = crops[0]
    with Image.open(tmp_path / "crops" / f.name) as im:
        packed = np.asarray(im.convert("RGB")).astype(np.float64)
    img = ref.images[ref.files.index(small / f.source)].permute(1, 2, 0).numpy().astype(np.float64)
    # Find the crop's place in its photo: the offset with the smallest error.
    errors = [((img[t:t + 256, x:x + 256] - packed) ** 2).mean()
              for t in range(img.shape[0] - 255) for x in range(img.shape[1] - 255)]
    assert 10 * np.log10(255**2 / min(errors)) > 35
    with pytest.raises(ValueError, match="quality"):
        pack(tmp_path / "bad", budget, small=small, quality=0)
    with pytest.raises(ValueError, match="training crop"):
        pack(tmp_path / "bad", budget, small=small, small_crop=128)
