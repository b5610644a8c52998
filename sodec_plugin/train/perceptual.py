"""A differentiable SSIMULACRA2, so that a decoder can be trained toward the score the evaluation reports.

It follows the `ssimulacra2` package (the Python port of libjxl's metric that `sodec eval` scores with) step by
step, so its scores match that package's on 8-bit images; the package's constants and 108 weights are imported
from it, not copied. Where the package's steps have no useful gradient (cube roots and fractional powers at 0),
the values are kept and only the gradient is made finite.

Two details of the package that this module reproduces rather than "fixes":
- its XYB conversion transposes the image (`linear.T`), so the blur's zero padding falls on the columns of the
  picture and scipy's `reflect` boundary on its rows;
- with fewer than 6 scales (a side under 225 px) it reads the weights as one continuous run, so a scale's weights
  are not the same as at full size.
"""

from __future__ import annotations

import math
from functools import cache, lru_cache, partial

import torch
import torch.nn.functional as F

from ..metrics import PERCEPTUAL_MIN_SIDE

# The exchange rate between SSIMULACRA2 and PSNR on the rate-distortion curves of the bundled model: one dB
# of PSNR is worth about 6 points.
SSIMULACRA2_PER_DB = 6.0
SIGMA = 1.5  # the package's blur_image default
# blur_image pads the image with `round(3.2795 sigma + 0.2546)` zero lines, then calls scipy's gaussian_filter with
# truncate=3.33, whose kernel reaches int(3.33 sigma + 0.5) pixels; the padding is at least as wide as the kernel,
# so along that axis the blur is exactly a zero-padded convolution.
ZERO_PAD = int(round(3.2795 * SIGMA + 0.2546))
RADIUS = int(3.33 * SIGMA + 0.5)
assert ZERO_PAD >= RADIUS
# Msssim.score's mapping of the weighted sum to the 0..100 scale (literals in the package, not importable).
SCORE_SCALE = 0.9562382616834844
SCORE_POLY = (2.326765642916932, -0.020884521182843837, 6.248496625763138e-05)
SCORE_EXPONENT = 0.6276336467831387
# Floors below which a value only moves the gradient: the cube root's input (above 0.0038 for any colour in
# 0..1, so only out-of-range colours reach it) and the weighted sum before its 0.6276 power (under this floor
# the score is 100 - 0.003).
CBRT_FLOOR = 1e-6
SUM_FLOOR = 1e-6


@cache
def _package():
    """The `ssimulacra2` package's module, or an ImportError that says how to install it."""
    try:
        from ssimulacra2 import ssimulacra2 as package
    except ImportError as e:
        raise ImportError('ssimulacra2_torch needs the ssimulacra2 package (pip install -e ".[eval]")') from e
    return package


def _constants(dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
    p = _package()
    as_t = partial(torch.as_tensor, dtype=dtype, device=device)
    return {"opsin": as_t(p.kOpsinAbsorbanceMatrix.reshape(3, 3)),
            "bias": as_t(p.kOpsinAbsorbanceBias).view(1, 3, 1, 1),
            "weights": as_t(p.weights)}


def srgb_to_linear(v: torch.Tensor) -> torch.Tensor:
    """The sRGB curve; the power branch sees only its own range, so its gradient is finite everywhere."""
    curve = ((v.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4
    return torch.where(v <= 0.04045, v / 12.92, curve)


def linear_to_xyb(linear: torch.Tensor, c: dict[str, torch.Tensor]) -> torch.Tensor:
    """linear_rgb_to_xyb then make_positive_xyb, on (B, 3, H, W)."""
    mixed = torch.einsum("ij,bjhw->bihw", c["opsin"], linear) + c["bias"]
    # The package's max(mixed, 0) before its cube root: clamping at a floor instead keeps d/dx x^(1/3) finite.
    mixed = mixed.clamp_min(CBRT_FLOOR).pow(1 / 3) - c["bias"].pow(1 / 3)
    m0, m1, m2 = mixed.unbind(1)
    x, y = 0.5 * (m0 - m1), 0.5 * (m0 + m1)
    return torch.stack([x * 14.0 + 0.42, y + 0.01, (m2 - y) + 0.55], dim=1)


@lru_cache(maxsize=64)
def blur_matrix(n: int, reflect: bool, dtype: torch.dtype = torch.float64,
                device: torch.device | None = None) -> torch.Tensor:
    """The package's 1-D blur over `n` samples as an n x n matrix (built in float64): zero padding, or scipy's
    `reflect` boundary (edge sample repeated: d c b a | a b c d) folded into the first and last rows."""
    if n < RADIUS:
        raise ValueError(f"a blur needs at least {RADIUS} samples, got {n}")
    x = torch.arange(-RADIUS, RADIUS + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 / SIGMA**2 * x**2)  # scipy's _gaussian_kernel1d for order 0
    kernel = kernel / kernel.sum()
    rows, m = torch.arange(n), torch.zeros(n, n, dtype=torch.float64)
    for tap in range(2 * RADIUS + 1):
        cols = rows + tap - RADIUS
        if reflect:
            cols = torch.where(cols < 0, -cols - 1, torch.where(cols >= n, 2 * n - 1 - cols, cols))
            keep = torch.ones(n, dtype=torch.bool)
        else:
            keep = (cols >= 0) & (cols < n)
        m.index_put_((rows[keep], cols[keep]), kernel[tap].expand(int(keep.sum())), accumulate=True)
    return m.to(dtype=dtype, device=device)


def blur(img: torch.Tensor) -> torch.Tensor:
    """The package's blur_image on (..., H, W): zero padding across the columns and `reflect` across the rows,
    since the package blurs a transposed image. Banded matrix products: on CPU about 15x faster than a
    one-channel conv2d, mostly in the backward pass."""
    h, w = img.shape[-2:]
    across_rows = blur_matrix(h, reflect=True, dtype=img.dtype, device=img.device)
    along_rows = blur_matrix(w, reflect=False, dtype=img.dtype, device=img.device)
    return across_rows @ (img @ along_rows.T)


def _pooled(d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """L1 and L4 means over each plane of a non-negative map, (B, 3) each. The L4 mean goes through the
    4-norm, whose gradient torch defines as 0 at an all-zero plane (mean(d^4)^0.25 has no finite one there)."""
    n = d.shape[-2] * d.shape[-1]
    return d.mean((-2, -1)), torch.linalg.vector_norm(d, ord=4, dim=(-2, -1)) / n**0.25


def _scale_terms(img1: torch.Tensor, img2: torch.Tensor, c: dict[str, torch.Tensor], c2: float) -> torch.Tensor:
    """One scale's 18 numbers per image, (B, 3 channels, 2 norms, 3 maps: ssim, artifact, detail lost)."""
    blurred = blur(torch.cat([img1, img2, img1 * img1, img2 * img2, img1 * img2], dim=1))
    mu1, mu2, s11, s22, s12 = blurred.split(3, dim=1)
    num_m = 1.0 - (mu1 - mu2) ** 2
    num_s = 2.0 * (s12 - mu1 * mu2) + c2
    denom_s = (s11 - mu1 * mu1) + (s22 - mu2 * mu2) + c2
    ssim = (1.0 - num_m * num_s / denom_s).clamp_min(0.0)
    d1 = (1.0 + (img2 - mu2).abs()) / (1.0 + (img1 - mu1).abs()) - 1.0
    maps = (ssim, d1.clamp_min(0.0), (-d1).clamp_min(0.0))  # ringing/blocking, then blurring
    pooled = [_pooled(m) for m in maps]  # per map: (L1, L4)
    return torch.stack([torch.stack([p[n] for p in pooled], dim=-1) for n in range(2)], dim=-2)


def ssimulacra2_torch(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """SSIMULACRA2 of `x_hat` against reference `x`, one score per image, (B,): 100 for identical images, 90
    visually lossless, lower is worse. Both are (B, 3, H, W) sRGB in [0, 1], floating point, sides of at least
    8 px; differentiable in both. Odd sides are downsampled as the package does (the last row or column
    averaged with what remains)."""
    if x_hat.shape != x.shape:
        raise ValueError(f"shape mismatch: {tuple(x_hat.shape)} vs {tuple(x.shape)}")
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) RGB batches, got {tuple(x.shape)}")
    if not (x.is_floating_point() and x_hat.is_floating_point()):
        raise TypeError(f"expected floating point images in [0, 1], got {x_hat.dtype} and {x.dtype}")
    if min(x.shape[-2:]) < PERCEPTUAL_MIN_SIDE:
        raise ValueError(f"SSIMULACRA2 needs sides of at least {PERCEPTUAL_MIN_SIDE} px, got {tuple(x.shape[-2:])}")
    p = _package()
    c = _constants(x_hat.dtype, x_hat.device)
    lin1, lin2 = srgb_to_linear(x.to(x_hat.dtype)), srgb_to_linear(x_hat)
    terms = []
    for scale in range(p.kNumScales):
        if scale > 0:  # the package's 2x2 mean in linear RGB; ceil_mode averages a lone last row/column
            lin1, lin2 = (F.avg_pool2d(v, 2, ceil_mode=True) for v in (lin1, lin2))
        if min(lin1.shape[-2:]) < PERCEPTUAL_MIN_SIDE:
            break
        terms.append(_scale_terms(linear_to_xyb(lin1, c), linear_to_xyb(lin2, c), c, p.kC2))
    # The package's weight index runs over channel, then scale, then norm, then map (all terms are >= 0, so
    # its abs() is the identity).
    flat = torch.stack(terms, dim=2).flatten(1)  # (B, 3, scales, 2, 3) -> (B, 18 * scales)
    s = flat @ c["weights"][: flat.shape[1]] * SCORE_SCALE
    a, b, cubic = SCORE_POLY
    s = a * s + b * s * s + cubic * s * s * s
    return torch.where(s > 0, 100.0 - 10.0 * s.clamp_min(SUM_FLOOR) ** SCORE_EXPONENT, torch.full_like(s, 100.0))


def ssimulacra2_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(100 - SSIMULACRA2) / 100 per image, (B,): 0 for a perfect reconstruction, about 0.1 at "visually
    lossless", 0.5 at medium quality; unbounded above, since the score goes below 0 for very poor images."""
    return (100.0 - ssimulacra2_torch(x_hat, x)) / 100.0


def ssimulacra2_as_mse(x_hat: torch.Tensor, x: torch.Tensor, mse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SSIMULACRA2's shortfall from 100 as a distortion in MSE units, (B,), and the scores, (B,): the points are
    turned into dB of PSNR (SSIMULACRA2_PER_DB) and the dB into MSE at each image's own MSE (one dB is
    MSE ln(10) / 10 there), so that in a rate-distortion loss a weight of 1 trades a dB's worth of SSIMULACRA2
    as the MSE term trades a dB of PSNR, at every rate point."""
    score = ssimulacra2_torch(x_hat.clamp(0.0, 1.0), x)
    return mse.detach() * (math.log(10.0) / 10.0) * (100.0 - score) / SSIMULACRA2_PER_DB, score
