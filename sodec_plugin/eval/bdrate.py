"""Bjontegaard deltas between two rate-distortion curves.

Standard piecewise-cubic method (as in the `bjontegaard` package and the JVET CTC sheets): log10(rate) is interpolated
as a function of distortion with a monotone piecewise cubic (scipy PchipInterpolator), both curves are integrated
exactly over the distortion range they share, and the mean log-rate gap is turned into a percentage. Piecewise
interpolation passes through every point, unlike VCEG-M33's single cubic fit which can overshoot with 4+ points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.interpolate import PchipInterpolator


def _clean_curve(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray] | None:
    """Finite points sorted by x, with equal x merged by averaging y (PCHIP needs strictly increasing x); None when
    fewer than two distinct points remain."""
    xa, ya = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    if xa.shape != ya.shape:
        raise ValueError(f"length mismatch: {xa.size} vs {ya.size}")
    keep = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[keep], ya[keep]
    if xa.size == 0:
        return None
    ux, inv = np.unique(xa, return_inverse=True)
    uy = np.bincount(inv, weights=ya) / np.bincount(inv)
    if ux.size < 2:
        return None
    return ux, uy


def _mean_gap(x_a: Sequence[float], y_a: Sequence[float], x_b: Sequence[float], y_b: Sequence[float]) -> float:
    """Mean of (y_a(x) - y_b(x)) over the shared x range, with y(x) PCHIP-interpolated; nan without overlap."""
    ca, cb = _clean_curve(x_a, y_a), _clean_curve(x_b, y_b)
    if ca is None or cb is None:
        return math.nan
    lo = max(ca[0][0], cb[0][0])
    hi = min(ca[0][-1], cb[0][-1])
    if not hi > lo:
        return math.nan
    ia = PchipInterpolator(*ca).integrate(lo, hi)
    ib = PchipInterpolator(*cb).integrate(lo, hi)
    return float((ia - ib) / (hi - lo))


def _log_rates(rate: Sequence[float]) -> np.ndarray:
    r = np.asarray(rate, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r > 0, np.log10(np.where(r > 0, r, 1.0)), np.nan)


def bd_rate(rate_a: Sequence[float], dist_a: Sequence[float], rate_b: Sequence[float],
            dist_b: Sequence[float]) -> float:
    """Average rate difference of A relative to B at equal quality, in percent (negative: A needs fewer bits).

    `dist` is a quality where higher is better (PSNR, MS-SSIM dB). nan when the quality ranges do not overlap or
    either curve has fewer than two usable points.
    """
    gap = _mean_gap(dist_a, _log_rates(rate_a), dist_b, _log_rates(rate_b))
    return math.nan if math.isnan(gap) else (10.0**gap - 1.0) * 100.0


def bd_psnr(rate_a: Sequence[float], dist_a: Sequence[float], rate_b: Sequence[float],
            dist_b: Sequence[float]) -> float:
    """Average quality difference A - B at equal rate (in the unit of `dist`, dB for PSNR; positive: A better),
    over the shared log-rate range; nan without overlap."""
    return _mean_gap(_log_rates(rate_a), dist_a, _log_rates(rate_b), dist_b)


bd_quality = bd_psnr  # same computation for any higher-is-better quality such as MS-SSIM in dB
