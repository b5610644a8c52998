"""The entropy-parameter network P: z_hat -> (means, scales) of y, in exact fixed point.

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

_EXACT_LIMIT = 2.0**53
_BAND_BYTES = 32 << 20


class PriorSynthesis(nn.Module):
    """Two 2x upsamplings (conv + pixel shuffle, no transposed conv) and a 3x3 head to 2M."""

    def __init__(self, z_channels: int, hidden: int, y_channels: int,
                 weight_bits: int, activation_bits: int, output_bits: int) -> None:
        super().__init__()
        self.up1 = nn.Conv2d(z_channels, hidden * 4, 3, padding=1)
        self.up2 = nn.Conv2d(hidden, hidden * 4, 3, padding=1)
        self.head = nn.Conv2d(hidden, y_channels * 2, 3, padding=1)
        self.weight_bits = weight_bits
        self.activation_bits = activation_bits
        self.output_bits = output_bits
        # Activations are clamped to this many integer bits, which bounds every accumulator.
        self.activation_range = 2.0 ** (activation_bits + 8)

    def forward(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(F.pixel_shuffle(self.up1(z_hat), 2))
        h = F.relu(F.pixel_shuffle(self.up2(h), 2))
        means, scales = self.head(h).chunk(2, dim=1)
        return means, scales

    def _fixed(self, conv: nn.Conv2d, in_bits: int) -> tuple[torch.Tensor, torch.Tensor]:
        w = torch.round(conv.weight.detach().double().cpu() * 2.0**self.weight_bits)
        b = torch.round(conv.bias.detach().double().cpu() * 2.0 ** (self.weight_bits + in_bits))
        if w.abs().max() >= 2.0**16:
            raise ValueError("prior weights exceed the fixed-point range; lower prior_weight_bits")
        return w, b

    @staticmethod
    def _conv_exact(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # unfold + matmul: integer-valued float64, so every partial sum is exact (no Winograd/FFT).
        # Row bands keep the unfolded columns near _BAND_BYTES whatever the image size; the
        # result does not depend on the banding (exact arithmetic).
        n, c, hh, ww = x.shape
        k = w.shape[-1]
        wm = w.reshape(w.shape[0], -1)
        xp = F.pad(x, (0, 0, k // 2, k // 2))
        rows = max(1, _BAND_BYTES // (c * k * k * 8 * ww * n))
        out = torch.empty(n, w.shape[0], hh, ww, dtype=x.dtype)
        for r0 in range(0, hh, rows):
            r1 = min(hh, r0 + rows)
            cols = F.unfold(xp[:, :, r0:r1 + k - 1], k, padding=(0, k // 2))
            out[:, :, r0:r1] = (wm @ cols).add_(b[:, None]).reshape(n, w.shape[0], r1 - r0, ww)
        return out

    @staticmethod
    def _requantize(acc: torch.Tensor, from_bits: int, to_bits: int) -> torch.Tensor:
        """floor(acc / 2**(from - to)), in place (acc is a temporary as large as y)."""
        return acc.div_(2.0 ** (from_bits - to_bits)).floor_()

    @torch.no_grad()
    def exact(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Means and scales as exact dyadic float64 values on the CPU; z_hat must be integers."""
        wb, ab, ob = self.weight_bits, self.activation_bits, self.output_bits
        x = z_hat.detach().double().cpu().clamp(-(2.0**15), 2.0**15)
        if not torch.equal(x, torch.round(x)):
            raise ValueError("exact prior needs integer z_hat")
        acc = self._conv_exact(x, *self._fixed(self.up1, 0))
        h = self._requantize(F.pixel_shuffle(acc, 2).relu_(), wb, ab).clamp_(max=self.activation_range)
        acc = self._conv_exact(h, *self._fixed(self.up2, ab))
        h = self._requantize(F.pixel_shuffle(acc, 2).relu_(), wb + ab, ab).clamp_(max=self.activation_range)
        del acc
        acc = self._conv_exact(h, *self._fixed(self.head, ab))
        del h
        lo, hi = acc.aminmax()
        if max(-lo.item(), hi.item()) >= _EXACT_LIMIT:
            raise ValueError("prior accumulator left the exact float64 range")
        out = self._requantize(acc, wb + ab, ob).clamp_(-(2.0**24), 2.0**24).div_(2.0**ob)
        means, scales = out.chunk(2, dim=1)
        return means, scales
