"""A training set packed under a byte budget, for a machine that takes only a small upload.

A GPU machine that takes an upload of 64 MiB in all, the tracked tree included, leaves a few
megabytes for photos. The photos are packed as the trainer would see them, so
that a run on the pack needs no rescaling: small photos downscaled once (CropDataset's `downscale`),
high-resolution photos as crops at CropDataset's random scales, each stored as a JPEG (quality 95 by
default) with full-resolution chroma. On the small training photos a quality-95 copy is 41 dB PSNR
from its source on average and a quality-90 one 37 dB, above what the codec reaches on them; quality
90 and one crop per small photo fit twice the photos into the same bytes, and trained better
(docs/data.md, which says what DATA is). Train on the pack with `downscale` 1 and `random_downscale`
1. MANIFEST.tsv names the source photo of every file.

    python -m sodec_plugin.train.subset --out runs/gpu-data --max-mib 15.5 --hr-share 0.32 \\
        --small-crop 256 --quality 90 --small DATA/train --hr DATA/hr-train
"""

from __future__ import annotations

import argparse
import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .data import CropDataset, random_window

JPEG_QUALITY = 95
MANIFEST = "MANIFEST.tsv"


@dataclass
class PackedFile:
    name: str
    kind: str  # "small" (a whole photo) or "hr" (a crop of a high-resolution photo)
    source: str  # the photo's path relative to its folder
    width: int
    height: int
    size: int


def _jpeg(pixels: torch.Tensor, quality: int = JPEG_QUALITY) -> bytes:
    """(3, H, W) uint8 or [0, 1] float pixels as a 4:4:4 JPEG."""
    if pixels.dtype != torch.uint8:
        pixels = (pixels * 255).round_().clamp_(0, 255).to(torch.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(buf, "JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def _prepare(out: Path) -> None:
    """An empty folder, or one that holds only an earlier pack (replaced): never someone's photos."""
    if out.exists() and any(out.iterdir()):
        if not (out / MANIFEST).is_file():
            raise FileExistsError(f"{out} is not empty and holds no {MANIFEST}: not a pack to replace")
        with open(out / MANIFEST, newline="") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                (out / Path(row["file"]).name).unlink(missing_ok=True)
        (out / MANIFEST).unlink()
        if any(out.iterdir()):
            raise FileExistsError(f"{out} holds files that are not part of its pack")
    out.mkdir(parents=True, exist_ok=True)


def pack(out: str | Path, max_bytes: int, *, small: str | Path | None = None, hr: str | Path | None = None,
         hr_share: float = 0.5, crop: int = 256, hr_crop: int = 320, downscale: float = 0.75,
         random_downscale: float = 0.35, small_crop: int | None = None, quality: int = JPEG_QUALITY,
         seed: int = 0) -> list[PackedFile]:
    """Fill `out` with up to `max_bytes` of JPEGs: `hr_share` of the budget for crops of the photos
    under `hr` (`hr_crop` px, each at a random scale as CropDataset takes them), the rest for photos
    under `small`, downscaled as CropDataset would for `crop` px crops: whole, or one random
    `small_crop` px crop of each, which fits more distinct photos into the budget."""
    if not 0 <= hr_share <= 1:
        raise ValueError(f"hr_share must be in [0, 1], not {hr_share}")
    if hr_crop < crop or (small_crop is not None and small_crop < crop):
        raise ValueError(f"stored crops ({hr_crop}, {small_crop}) must be at least the training crop ({crop})")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in [1, 100], not {quality}")
    out = Path(out)
    _prepare(out)
    rng = np.random.default_rng(seed)
    budget = {"small": 0 if small is None else max_bytes * (1 - hr_share),
              "hr": 0 if hr is None else max_bytes * hr_share}
    files: list[PackedFile] = []
    used = {"small": 0, "hr": 0}

    def write(kind: str, source: str, data: bytes, width: int, height: int) -> bool:
        if used[kind] + len(data) > budget[kind]:
            return False
        name = f"{kind}-{sum(f.kind == kind for f in files):05d}.jpg"
        (out / name).write_bytes(data)
        used[kind] += len(data)
        files.append(PackedFile(name, kind, source, width, height, len(data)))
        return True

    if budget["small"] > 0:
        ds = CropDataset(small, crop=crop, downscale=downscale)
        for i in rng.permutation(len(ds.images)):
            img = ds.images[int(i)]
            if small_crop is not None:
                img = random_window(img, min(small_crop, *img.shape[1:]), rng)
            source = str(ds.files[int(i)].relative_to(ds.root))
            if not write("small", source, _jpeg(img, quality), img.shape[2], img.shape[1]):
                break
    if budget["hr"] > 0:
        ds = CropDataset(hr, crop=hr_crop, downscale=downscale, random_downscale=random_downscale)
        while True:
            i, c = ds.sample(rng)
            if not write("hr", str(ds.files[i].relative_to(ds.root)), _jpeg(c, quality), hr_crop, hr_crop):
                break
    with open(out / MANIFEST, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["file", "kind", "source", "width", "height", "bytes"])
        for p in files:
            w.writerow([p.name, p.kind, p.source, p.width, p.height, p.size])
    return files


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sodec_plugin.train.subset", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--max-mib", required=True, type=float, help="size of the pack in MiB")
    ap.add_argument("--small", type=Path, help="folder of small photos, packed whole")
    ap.add_argument("--hr", type=Path, help="folder of high-resolution photos, packed as crops")
    ap.add_argument("--hr-share", type=float, default=0.5, help="share of the budget for --hr crops")
    ap.add_argument("--crop", type=int, default=256, help="the training crop")
    ap.add_argument("--hr-crop", type=int, default=320, help="side of the stored --hr crops")
    ap.add_argument("--small-crop", type=int, help="store one random crop of this side per small photo")
    ap.add_argument("--quality", type=int, default=JPEG_QUALITY, help="JPEG quality (4:4:4)")
    ap.add_argument("--downscale", type=float, default=0.75)
    ap.add_argument("--random-downscale", type=float, default=0.35)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.small is None and a.hr is None:
        ap.error("give --small, --hr or both")
    files = pack(a.out, int(a.max_mib * 2**20), small=a.small, hr=a.hr, hr_share=a.hr_share, crop=a.crop,
                 hr_crop=a.hr_crop, downscale=a.downscale, random_downscale=a.random_downscale,
                 small_crop=a.small_crop, quality=a.quality, seed=a.seed)
    for kind in ("small", "hr"):
        sel = [f for f in files if f.kind == kind]
        if sel:
            print(f"{kind}: {len(sel)} files from {len({f.source for f in sel})} photos, "
                  f"{sum(f.size for f in sel) / 2**20:.2f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
