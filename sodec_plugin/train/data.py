"""Training images: a folder of photos, preloaded once, and random crops chosen by step number.

A batch is a pure function of (seed, step), so a resumed run sees exactly the batches an
uninterrupted one would have seen, with no sampler state to save.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..container import IMAGE_EXTENSIONS


def list_images(folder: str | Path) -> list[Path]:
    """Every image under `folder`, sorted; linked folders are followed, so a training set can be put
    together from folders that live elsewhere (Path.rglob does not follow them before Python 3.13)."""
    files = sorted(Path(root, name) for root, _, names in os.walk(folder, followlinks=True) for name in names
                   if Path(name).suffix.lower() in IMAGE_EXTENSIONS)
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


def random_window(img: torch.Tensor, side: int, rng: np.random.Generator) -> torch.Tensor:
    """A `side` x `side` view of (C, H, W) `img` at a random place (top drawn before left: the
    order every recorded run's batches depend on)."""
    _, h, w = img.shape
    top = int(rng.integers(h - side + 1))
    left = int(rng.integers(w - side + 1))
    return img[:, top:top + side, left:left + side]


class CropDataset:
    """Images downscaled once by `downscale` (softens JPEG artefacts) and kept as uint8.

    With `random_downscale` < 1 every crop is also taken at a random scale between that and 1
    (log-uniform, never below the crop size): a multi-megapixel photo then teaches the codec both
    its own scale and smaller ones, and downscaling removes camera noise, the usual recipe for
    learned codecs trained on high-resolution photos."""

    def __init__(self, folder: str | Path, crop: int, downscale: float = 0.75, random_downscale: float = 1.0) -> None:
        if not 0 < random_downscale <= 1:
            raise ValueError(f"random_downscale must be in (0, 1], not {random_downscale}")
        self.root = Path(folder)
        self.files = list_images(folder)
        self.crop = crop
        self.random_downscale = random_downscale
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
            out[i] = self.sample(rng)[1]
        return out

    def sample(self, rng: np.random.Generator) -> tuple[int, torch.Tensor]:
        """One random crop, (3, crop, crop) in [0, 1], and the index of the image it came from."""
        index = int(rng.integers(len(self.images)))
        img = self.images[index]
        _, h, w = img.shape
        side = self.crop
        if self.random_downscale < 1:
            lo = max(self.random_downscale, self.crop / min(h, w))
            if lo < 1:
                side = min(h, w, round(self.crop / math.exp(rng.uniform(math.log(lo), 0.0))))
        c = random_window(img, side, rng)
        if rng.random() < 0.5:
            c = c.flip(-1)
        c = c.float() / 255.0
        if side != self.crop:
            c = torch.nn.functional.interpolate(c[None], size=(self.crop, self.crop), mode="bilinear",
                                                antialias=True, align_corners=False)[0].clamp_(0, 1)
        return index, c
