"""Scoring decoded images with the chosen metrics, on a fixed region, through the evaluation cache.

The perceptual metrics cost far more than the codecs on large photos (ColorVideoVDP and SSIMULACRA2 take about
0.3-0.4 s each on a 768x512 image on one core, and grow with the pixels), and a rate-matched evaluation scores
every point of every codec. So:

* PSNR and MS-SSIM are always computed on the whole image; the perceptual metrics on the centre `crop` x `crop`
  region (the whole image when it is smaller), the same region for every codec and point, and the report says so.
* Every score goes through the evaluation cache (cache.py), so nothing is scored twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..metrics import METRICS, ms_ssim_db, score
from .cache import EvalCache, digest

# The metrics that `sodec eval` scores by default, and the ones scored on the whole image whatever the crop.
DEFAULT_METRICS = tuple(METRICS)
WHOLE_IMAGE_METRICS = ("psnr", "ms_ssim")
# Perceptual metrics look at the centre 768 x 768 of larger photos: a Kodak image (768 x 512) whole, 0.59 MP of a
# 2048 px CLIC photo, which keeps a rate-matched CLIC evaluation with all its baselines near an hour on 2 cores.
DEFAULT_CROP = 768


def centre_crop(a: np.ndarray, crop: int | None) -> np.ndarray:
    """The centre `crop` x `crop` of an H x W x C array (each side clipped to the image); None: the whole image."""
    if crop is None:
        return a
    h, w = a.shape[:2]
    ch, cw = min(h, crop), min(w, crop)
    top, left = (h - ch) // 2, (w - cw) // 2
    return a[top:top + ch, left:left + cw]


class Scorer:
    """Scores a decode against its reference with `metrics`, perceptual ones on the centre `crop`."""

    def __init__(self, metrics: Sequence[str] = DEFAULT_METRICS, *, crop: int | None = DEFAULT_CROP,
                 cache: EvalCache | None = None) -> None:
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {', '.join(unknown)} (known: {', '.join(METRICS)})")
        if crop is not None and crop < 8:
            raise ValueError(f"the perceptual crop must be at least 8 px, got {crop}")
        # PSNR and MS-SSIM are always measured: the report, the ladder check and the old results rely on them.
        self.metrics = list(dict.fromkeys((*WHOLE_IMAGE_METRICS, *metrics)))
        self.crop = crop
        self.cache = cache if cache is not None else EvalCache(None)

    def region(self, metric: str) -> int | None:
        return None if metric in WHOLE_IMAGE_METRICS else self.crop

    def describe(self) -> dict[str, str]:
        """What each metric scored, for the report: implementation and region."""
        out = {}
        for m in self.metrics:
            where = "whole image" if self.region(m) is None else f"centre {self.crop} x {self.crop} px (whole " \
                                                                 "image when smaller)"
            out[m] = f"{METRICS[m].implementation}; {where}"
        return out

    def __call__(self, ref: np.ndarray, dec: np.ndarray) -> dict[str, float]:
        out: dict[str, float] = {}
        digests: dict[int | None, tuple[str, str]] = {}
        for m in self.metrics:
            crop = self.region(m)
            a, b = centre_crop(ref, crop), centre_crop(dec, crop)
            if crop not in digests:
                digests[crop] = (digest(a), digest(b))
            ka, kb = digests[crop]
            value = self.cache.score(m, ka, kb)
            if value is None:
                value = score(m, a, b)
                self.cache.put_score(m, ka, kb, value)
            out[m] = value
        out["ms_ssim_db"] = ms_ssim_db(out["ms_ssim"])
        return out
