"""Scoring decoded images with the chosen metrics, on a fixed region, with a cache on disk.

The perceptual metrics cost far more than the codecs on large photos (ColorVideoVDP and SSIMULACRA2 take about
0.3-0.4 s each on a 768x512 image on one core, and grow with the pixels), and a rate-matched evaluation scores
every point of every codec. So:

* PSNR and MS-SSIM are always computed on the whole image; the perceptual metrics on the centre `crop` x `crop`
  region (the whole image when it is smaller), the same region for every codec and point, and the report says so.
* Every score is cached under the sha256 of the two scored arrays and the metric's name, so a re-run, or an
  evaluation of another model that lands a baseline on the same encode, never scores twice.
"""

from __future__ import annotations

import hashlib
import math
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .metrics import METRICS, ms_ssim_db, score

# The metrics that `sodec eval` scores by default, and the ones scored on the whole image whatever the crop.
DEFAULT_METRICS = tuple(METRICS)
WHOLE_IMAGE_METRICS = ("psnr", "ms_ssim")
# Perceptual metrics look at the centre 768 x 768 of larger photos: a Kodak image (768 x 512) whole, 0.59 MP of a
# 2048 px CLIC photo, which keeps a rate-matched CLIC evaluation with all its baselines near an hour on 2 cores.
DEFAULT_CROP = 768


def default_cache_path() -> Path:
    """$SODEC_SCORE_CACHE, else the user's cache folder (XDG_CACHE_HOME, ~/.cache): shared by all evaluations."""
    env = os.environ.get("SODEC_SCORE_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "sodec" / "scores.sqlite"


def centre_crop(a: np.ndarray, crop: int | None) -> np.ndarray:
    """The centre `crop` x `crop` of an H x W x C array (each side clipped to the image); None: the whole image."""
    if crop is None:
        return a
    h, w = a.shape[:2]
    ch, cw = min(h, crop), min(w, crop)
    top, left = (h - ch) // 2, (w - cw) // 2
    return a[top:top + ch, left:left + cw]


def _digest(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    return hashlib.sha256(f"{a.shape}{a.dtype}".encode() + a.tobytes()).hexdigest()


class ScoreCache:
    """Scores by (metric, reference digest, decode digest) in one SQLite file; safe to share between threads.
    `path` None keeps nothing on disk."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path) if self.path else ":memory:", check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock, self._db:
            self._db.execute("CREATE TABLE IF NOT EXISTS scores (metric TEXT, ref TEXT, dec TEXT, value REAL, "
                             "PRIMARY KEY (metric, ref, dec))")
        self.hits = 0
        self.misses = 0

    def get(self, metric: str, ref: str, dec: str) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM scores WHERE metric=? AND ref=? AND dec=?",
                                   (metric, ref, dec)).fetchone()
        if row is None:
            return None
        return math.nan if row[0] is None else float(row[0])  # SQLite stores NaN as NULL

    def put(self, metric: str, ref: str, dec: str, value: float) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?)", (metric, ref, dec, value))

    def close(self) -> None:
        self._db.close()


class Scorer:
    """Scores a decode against its reference with `metrics`, perceptual ones on the centre `crop`."""

    def __init__(self, metrics: Sequence[str] = DEFAULT_METRICS, *, crop: int | None = DEFAULT_CROP,
                 cache: ScoreCache | None = None) -> None:
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {', '.join(unknown)} (known: {', '.join(METRICS)})")
        if crop is not None and crop < 8:
            raise ValueError(f"the perceptual crop must be at least 8 px, got {crop}")
        # PSNR and MS-SSIM are always measured: the report, the ladder check and the old results rely on them.
        self.metrics = list(dict.fromkeys((*WHOLE_IMAGE_METRICS, *metrics)))
        self.crop = crop
        self.cache = cache if cache is not None else ScoreCache(None)

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
                digests[crop] = (_digest(a), _digest(b))
            ka, kb = digests[crop]
            value = self.cache.get(m, ka, kb)
            if value is None:
                self.cache.misses += 1
                value = score(m, a, b)
                self.cache.put(m, ka, kb, value)
            else:
                self.cache.hits += 1
            out[m] = value
        out["ms_ssim_db"] = ms_ssim_db(out["ms_ssim"])
        return out
