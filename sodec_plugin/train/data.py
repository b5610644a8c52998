"""Training images: a folder of photos, preloaded once, and random crops chosen by step number.

A batch is a pure function of (seed, step), so a resumed run sees exactly the batches an
uninterrupted one would have seen, with no sampler state to save.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def list_images(folder: str | Path) -> list[Path]:
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"no images under {folder}")
    return files


def data_digest(files: list[Path], root: str | Path) -> str:
    """sha256 over the relative names and contents: the provenance of a training run."""
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(root)).encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


class CropDataset:
    """Images downscaled once by `downscale` (softens JPEG artefacts) and kept as uint8."""

    def __init__(self, folder: str | Path, crop: int, downscale: float = 0.75) -> None:
        self.root = Path(folder)
        self.files = list_images(folder)
        self.crop = crop
        self.images: list[torch.Tensor] = []
        for f in self.files:
            with Image.open(f) as im:
                im = im.convert("RGB")
                w, h = im.size
                s = max(downscale, crop / min(w, h))
                if s < 1.0:
                    im = im.resize((max(crop, round(w * s)), max(crop, round(h * s))), Image.Resampling.LANCZOS)
                self.images.append(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).contiguous())

    def digest(self) -> str:
        return data_digest(self.files, self.root)

    def batch(self, seed: int, step: int, size: int, rank: int = 0) -> torch.Tensor:
        rng = np.random.default_rng([seed, step] if rank == 0 else [seed, step, rank])
        out = torch.empty(size, 3, self.crop, self.crop)
        for i in range(size):
            img = self.images[int(rng.integers(len(self.images)))]
            _, h, w = img.shape
            top = int(rng.integers(h - self.crop + 1))
            left = int(rng.integers(w - self.crop + 1))
            c = img[:, top:top + self.crop, left:left + self.crop]
            if rng.random() < 0.5:
                c = c.flip(-1)
            out[i] = c.float() / 255.0
        return out
