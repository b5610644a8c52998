"""The checkerboard context model: a second coding pass that predicts y from its decoded neighbours.

He et al., "Checkerboard Context Model for Efficient Learned Image Compression" (CVPR 2021): the
anchors (latent positions with even row + column) are coded with the hyperprior alone; the other
half is then coded with means and scales refined from the decoded anchors around it. Both passes
are parallel, so decoding stays two network passes instead of one per position (the serial
context model of Minnen et al. 2018 would take seconds on a CPU).

It sees the anchors' coded symbols (y_hat minus the hyper mean, on the gained latent's own
integer grid: well scaled at every rate) and the hyper scales, and adds corrections to the hyper
means and scales: the head starts at zero, so a model warm-started from one without context codes
the same symbols and learns the refinement from there. Coding evaluates it in exact fixed point
(see fixed_point), with every input and activation clamped so that no accumulator can leave the
exact range whatever a stream holds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import fixed_point
from .fixed_point import check_exact, fixed_weights, requantize

# Inputs and activations are clamped to +-2**RANGE_BITS (in latent units) in training and coding.
RANGE_BITS = 12


def anchor_mask(h: int, w: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(h, w) bool: True where row + column is even (the first coding pass)."""
    r = torch.arange(h, device=device)[:, None]
    c = torch.arange(w, device=device)[None, :]
    return (r + c) % 2 == 0


class CheckerboardContext(nn.Module):
    """(anchors' symbols, hyper scales) -> corrections to the hyper means and scales of the rest."""

    def __init__(self, y_channels: int, context_channels: int, weight_bits: int, activation_bits: int,
                 output_bits: int) -> None:
        super().__init__()
        m, c = y_channels, context_channels
        self.context = nn.Conv2d(m, c, 5, padding=2)
        self.fuse1 = nn.Conv2d(c + m, 2 * c, 1)
        self.fuse2 = nn.Conv2d(2 * c, 2 * c, 1)
        self.head = nn.Conv2d(2 * c, 2 * m, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        # Taps whose row + column offset is odd: from a non-anchor position they see anchors only.
        k = torch.arange(5)
        self.register_buffer("tap_mask", ((k[:, None] + k[None, :]) % 2 == 1).float()[None, None],
                             persistent=False)
        self.weight_bits = weight_bits
        self.activation_bits = activation_bits
        self.output_bits = output_bits

    def forward(self, symbols: torch.Tensor, scales: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Float path for training: `symbols` holds the anchors' rounded residuals (0 elsewhere).

        The same clamps as the exact path; what it leaves out (inputs floored to 2**-activation_bits,
        the output clamp at 2**16, symbols clamped to the coding table) never binds in practice."""
        r = 2.0**RANGE_BITS
        ctx = F.conv2d(symbols.clamp(-r, r), self.context.weight * self.tap_mask, self.context.bias, padding=2)
        h = torch.cat([ctx.clamp(-r, r), scales.clamp(-r, r)], dim=1)
        h = F.relu(self.fuse1(h)).clamp(max=r)
        h = F.relu(self.fuse2(h)).clamp(max=r)
        dm, ds = self.head(h).chunk(2, dim=1)
        return dm, ds

    @torch.no_grad()
    def exact(self, symbols: torch.Tensor, scales: torch.Tensor,
              add_to: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The same corrections as exact dyadic float64 values (CPU), from integer symbols (any integer
        dtype) and dyadic scales; with `add_to` (means, scales), added to them in place instead (which
        may be `scales` itself: each band reads its own rows before it writes them).

        Only the non-anchor positions are computed (the anchors' corrections are 0), from the 12
        taps that see anchors, in bands of latent rows so that the gathered columns stay near
        BAND_BYTES however large the image; exact, so independent of the banding."""
        wb, ab = self.weight_bits, self.activation_bits
        w0, b0 = fixed_weights(self.context, wb, ab, self.tap_mask)
        taps = [(i, j) for i in range(5) for j in range(5) if (i + j) % 2 == 1]
        first = (torch.stack([w0[:, :, i, j] for i, j in taps], dim=1).reshape(w0.shape[0], -1), b0)
        layers = [first] + [(w.reshape(w.shape[0], -1), b) for w, b in
                            (fixed_weights(conv, wb, ab) for conv in (self.fuse1, self.fuse2, self.head))]
        scales = scales.double().cpu()
        n, m, h, w = scales.shape
        rows = max(1, fixed_point.BAND_BYTES // (8 * (len(taps) + 1) * m * w * n))
        targets = add_to if add_to is not None else (torch.zeros_like(scales), torch.zeros_like(scales))
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            a, b = max(0, r0 - 2), min(h, r1 + 2)
            xp = F.pad(self._fixed(symbols[..., a:b, :]), (2, 2, 2 - (r0 - a), 2 - (b - r1)))
            sel = ~anchor_mask(r1 - r0 + r0 % 2, w)[r0 % 2:]  # parity of the global row index
            cols = torch.cat([xp[:, :, i:i + r1 - r0, j:j + w][:, :, sel] for i, j in taps], dim=1)
            out = self._exact_columns(cols, self._fixed(scales[:, :, r0:r1][:, :, sel]), layers)
            for full, part in zip(targets, out.chunk(2, dim=1), strict=True):
                band = full[:, :, r0:r1]
                band[:, :, sel] = part if add_to is None else band[:, :, sel] + part
        return targets

    def _fixed(self, t: torch.Tensor) -> torch.Tensor:
        """Inputs to fixed point: floor to activation_bits fractional bits, clamped."""
        r = 2.0 ** (RANGE_BITS + self.activation_bits)
        return t.double().cpu().mul(2.0**self.activation_bits).floor_().clamp_(-r, r)

    def _exact_columns(self, cols: torch.Tensor, scales: torch.Tensor,
                       layers: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """The network on gathered positions: cols (n, 12*M, k) tap-major, scales (n, M, k) fixed."""
        wb, ab, ob = self.weight_bits, self.activation_bits, self.output_bits
        r = 2.0 ** (RANGE_BITS + ab)
        h = None
        for i, (w, b) in enumerate(layers):
            acc = (w @ (cols if i == 0 else h)).add_(b[:, None])
            check_exact(acc, "context")
            if i == 0:
                h = torch.cat([requantize(acc, wb + ab, ab).clamp_(-r, r), scales], dim=1)
            elif i < len(layers) - 1:
                h = requantize(acc.relu_(), wb + ab, ab).clamp_(max=r)
        return requantize(acc, wb + ab, ob).clamp_(-(2.0**24), 2.0**24).div_(2.0**ob)
