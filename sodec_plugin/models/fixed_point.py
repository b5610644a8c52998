"""Exact fixed-point convolutions for the networks that compute entropy parameters.

Hyperprior codecs break when encoder and decoder compute the entropy parameters with different
float results (CPU vs GPU, thread count, TF32): one flipped scale index and the rest of the
stream is garbage. Training uses the float network; coding uses the same weights rounded to
fixed point and evaluated with integer-valued float64 tensors on the CPU. Every product and sum
of such integers stays below 2**53, so the result is exact whatever the summation order, BLAS
or thread count (Balle et al., "Integer networks for data compression", 2019).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EXACT_LIMIT = 2.0**53
BAND_BYTES = 8 << 20  # a 12 MP prior: 0.37 s in 8 MB bands, 0.39-0.42 s in 32 MB ones, 35 MB less peak


def fixed_weights(conv: nn.Conv2d, weight_bits: int, in_bits: int,
                  mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights at `weight_bits` and bias at `weight_bits + in_bits` fractional bits, as integers."""
    w = conv.weight.detach().double().cpu()
    if mask is not None:
        w = w * mask.double().cpu()
    w = torch.round(w * 2.0**weight_bits)
    b = torch.round(conv.bias.detach().double().cpu() * 2.0 ** (weight_bits + in_bits))
    if w.abs().max() >= 2.0**16:
        raise ValueError("entropy-parameter weights exceed the fixed-point range; lower prior_weight_bits")
    return w, b


def check_bound(w: torch.Tensor, b: torch.Tensor, in_max: float, what: str) -> None:
    """Refuse integer weights whose conv could leave the exact float64 range for some input of
    magnitude at most `in_max` (every partial sum is at most this bound)."""
    if (w.abs().flatten(1).sum(1) * in_max + b.abs()).max() >= EXACT_LIMIT:
        raise ValueError(f"{what} weights can leave the exact float64 range")


def conv_exact(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Same-padded stride-1 conv of integer-valued float64 tensors, exactly.

    unfold + matmul, so every partial sum is exact (no Winograd/FFT). Row bands keep the unfolded
    columns near BAND_BYTES whatever the image size; the result does not depend on the banding.
    """
    n, c, hh, ww = x.shape
    k = w.shape[-1]
    wm = w.reshape(w.shape[0], -1)
    xp = F.pad(x, (0, 0, k // 2, k // 2))
    rows = max(1, BAND_BYTES // (c * k * k * 8 * ww * n))
    out = torch.empty(n, w.shape[0], hh, ww, dtype=x.dtype)
    for r0 in range(0, hh, rows):
        r1 = min(hh, r0 + rows)
        cols = F.unfold(xp[:, :, r0:r1 + k - 1], k, padding=(0, k // 2))
        out[:, :, r0:r1] = (wm @ cols).add_(b[:, None]).reshape(n, w.shape[0], r1 - r0, ww)
    return out


def requantize(acc: torch.Tensor, from_bits: int, to_bits: int) -> torch.Tensor:
    """floor(acc / 2**(from - to)), in place (acc is a temporary as large as y)."""
    return acc.div_(2.0 ** (from_bits - to_bits)).floor_()


def check_exact(acc: torch.Tensor, what: str) -> None:
    """Refuse a result that may have lost bits (weights too large for the fixed-point format)."""
    lo, hi = acc.aminmax()
    if max(-lo.item(), hi.item()) >= EXACT_LIMIT:
        raise ValueError(f"{what} accumulator left the exact float64 range")
