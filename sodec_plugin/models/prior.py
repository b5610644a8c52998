"""The entropy-parameter network P: z_hat -> (means, scales) of y, in exact fixed point
(see fixed_point for why)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .fixed_point import check_exact, conv_exact, fixed_weights, requantize


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

    @torch.no_grad()
    def exact(self, z_hat: torch.Tensor, in_gain: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Means and scales as exact dyadic float64 values on the CPU; z_hat must be integers.
        `in_gain` (exact, per channel) scales the input: it is folded into the first layer's
        weights before they are rounded, so the input stays integer."""
        wb, ab, ob = self.weight_bits, self.activation_bits, self.output_bits
        x = z_hat.detach().double().cpu().clamp(-(2.0**15), 2.0**15)
        if not torch.equal(x, torch.round(x)):
            raise ValueError("exact prior needs integer z_hat")
        mask = None if in_gain is None else in_gain.double().cpu()[None, :, None, None]
        acc = conv_exact(x, *fixed_weights(self.up1, wb, 0, mask))
        h = requantize(F.pixel_shuffle(acc, 2).relu_(), wb, ab).clamp_(max=self.activation_range)
        acc = conv_exact(h, *fixed_weights(self.up2, wb, ab))
        h = requantize(F.pixel_shuffle(acc, 2).relu_(), wb + ab, ab).clamp_(max=self.activation_range)
        del acc
        acc = conv_exact(h, *fixed_weights(self.head, wb, ab))
        del h
        check_exact(acc, "prior")
        out = requantize(acc, wb + ab, ob).clamp_(-(2.0**24), 2.0**24).div_(2.0**ob)
        means, scales = out.chunk(2, dim=1)
        return means, scales
