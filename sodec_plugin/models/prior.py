"""The entropy-parameter network P: z_hat -> (means, scales) of y, in exact fixed point
(see fixed_point for why)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .fixed_point import check_bound, check_exact, conv_exact, fixed_weights, requantize

# z_hat is clamped to this before the prior; it bounds the first layer's accumulator.
Z_LIMIT = 2.0**15
# Extra fractional bits of the first layer's weights when an inverse hyper gain is folded into
# them, so that a gain below 1 keeps their precision.
GAIN_FOLD_BITS = 8


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

    def first_layer(self, in_gain: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The first conv's integer weights and bias and their fractional bits. `in_gain` (float64,
        per input channel) multiplies the fixed-point weights, rounded again at GAIN_FOLD_BITS more
        bits: the prior reads gained z through its inverse while its input stays integer, and a
        gain of exactly 1 gives the same outputs as no gain (the weights are only shifted)."""
        w, b = fixed_weights(self.up1, self.weight_bits, 0)
        if in_gain is None:
            return w, b, self.weight_bits
        scale = in_gain.double().cpu()[None, :, None, None] * 2.0**GAIN_FOLD_BITS
        w, b = torch.round(w * scale), b * 2.0**GAIN_FOLD_BITS
        check_bound(w, b, Z_LIMIT, "prior (with the inverse hyper gain)")
        return w, b, self.weight_bits + GAIN_FOLD_BITS

    @torch.no_grad()
    def exact(self, z_hat: torch.Tensor, in_gain: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Means and scales as exact dyadic float64 values on the CPU; z_hat must be integers,
        read through `in_gain` (see first_layer)."""
        wb, ab, ob = self.weight_bits, self.activation_bits, self.output_bits
        x = z_hat.detach().double().cpu().clamp(-Z_LIMIT, Z_LIMIT)
        if not torch.equal(x, torch.round(x)):
            raise ValueError("exact prior needs integer z_hat")
        w, b, bits = self.first_layer(in_gain)
        acc = conv_exact(x, w, b)
        h = requantize(F.pixel_shuffle(acc, 2).relu_(), bits, ab).clamp_(max=self.activation_range)
        acc = conv_exact(h, *fixed_weights(self.up2, wb, ab))
        h = requantize(F.pixel_shuffle(acc, 2).relu_(), wb + ab, ab).clamp_(max=self.activation_range)
        del acc
        acc = conv_exact(h, *fixed_weights(self.head, wb, ab))
        del h
        check_exact(acc, "prior")
        out = requantize(acc, wb + ab, ob).clamp_(-(2.0**24), 2.0**24).div_(2.0**ob)
        means, scales = out.chunk(2, dim=1)
        return means, scales
