"""The fidelity decoder D_a: y_hat -> an image, fast. Alone it is a complete decoder (the `fidelity`
decode path, and every fidelity-only release); in the full model its output also guides the UNet
(models/guidance.py).

A decoder with `guidance_channels` reads the fidelity guidance too (Agustsson et al., "Multi-realism
image compression with a conditional generator", 2023): a per-channel scale and shift of its features,
computed from the guidance, moves one set of weights between the picture closest to the original
(guidance 1, the MSE end) and the one that looks best to the perceptual metrics (guidance 0). The
bitstream does not change; the guidance is chosen when decoding.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from . import rows
from .blocks import identity_blocks
from .gdn import GDN


def _up(cin: int, cout: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1)


class ChannelAffine(nn.Module):
    """x * (1 + scale) + shift per channel: one decode's guidance applied to one layer's features
    (a layer that maps each pixel alone, so the streamed decoder runs it band by band)."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        super().__init__()
        self.scale, self.shift = scale, shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(1.0 + self.scale).add_(self.shift)  # keeps x's memory layout (channels_last)


class GuidanceModulation(nn.Module):
    """The guidance t in [0, 1] -> a (scale, shift) pair per modulated layer, each (B, C, 1, 1),
    times (1 - t): at t = 1 (the MSE end) the decoder is exactly the one it was trained from, whatever
    was learnt. Its last layer starts at zero, so a decoder given it decodes exactly as before, at
    every t, until trained."""

    def __init__(self, widths: list[int], hidden: int) -> None:
        super().__init__()
        self.widths = widths
        self.embed = nn.Sequential(nn.Linear(1, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.head = nn.Linear(hidden, 2 * sum(widths))
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, t: torch.Tensor) -> list[ChannelAffine]:
        t = t.reshape(-1, 1).to(self.head.weight.dtype)
        p = self.head(self.embed(t)) * (1.0 - t)
        out, i = [], 0
        for c in self.widths:
            scale, shift = p[:, i:i + c], p[:, i + c:i + 2 * c]
            out.append(ChannelAffine(scale[:, :, None, None], shift[:, :, None, None]))
            i += 2 * c
        return out


class FidelityDecoder(nn.Module):
    """D_a: y_hat -> x_f in [0, 1] (`blocks` residual blocks on the latent grid, then the mirror
    of E with inverse GDN, with `blocks_1_8` residual blocks after its first upsampling). With
    `guidance_channels`, the outputs of the latent blocks, of the 1/8-grid blocks and of each inverse
    GDN are modulated by the guidance (GuidanceModulation, that many hidden units)."""

    def __init__(self, latent: int, widths: tuple[int, int, int], blocks: int = 0, blocks_1_8: int = 0,
                 guidance_channels: int = 0) -> None:
        super().__init__()
        c0, c1, c2 = widths
        self.blocks = identity_blocks(latent, blocks)
        # A separate module rather than layers inside `net`, so that `net`'s keys stay those of
        # the models released without it.
        self.blocks_1_8 = identity_blocks(c0, blocks_1_8)
        self.net = nn.Sequential(_up(latent, c0), GDN(c0, inverse=True), _up(c0, c1), GDN(c1, inverse=True),
                                 _up(c1, c2), GDN(c2, inverse=True), _up(c2, 3))
        self.modulation = None
        if guidance_channels:
            widths = [w for w, n in ((latent, blocks), (c0, 1), (c0, blocks_1_8), (c1, 1), (c2, 1)) if n]
            self.modulation = GuidanceModulation(widths, guidance_channels)

    @property
    def reads_guidance(self) -> bool:
        return self.modulation is not None

    def layers(self, guidance: float | torch.Tensor | None = None) -> list[nn.Module]:
        """The layers in the order forward() runs them; with the guidance's modulation after each
        modulated layer when the decoder reads it."""
        groups = [list(self.blocks or ()), list(self.net[:2]), list(self.blocks_1_8 or ()), list(self.net[2:4]),
                  list(self.net[4:6]), list(self.net[6:])]
        if self.modulation is None:
            return [layer for group in groups for layer in group]
        device = self.net[0].weight.device
        t = torch.as_tensor(1.0 if guidance is None else guidance, dtype=torch.float32, device=device)
        affine = iter(self.modulation(t.clamp(0.0, 1.0)))
        out: list[nn.Module] = []
        for group in groups[:-1]:
            if group:
                out += [*group, next(affine)]
        return out + groups[-1]

    def forward(self, y_hat: torch.Tensor, guidance: float | torch.Tensor | None = None) -> torch.Tensor:
        """y_hat (B, C, h, w) -> pixels; `guidance`: a number or one per image (B,), read only by a
        decoder with a modulation (1, the default, is its MSE end; clamped to [0, 1])."""
        h = y_hat
        for layer in self.layers(guidance):
            h = layer(h)
        return to_unit(h)

    def rows(self, y_hat: torch.Tensor, band: int, guidance: float | None = None) -> Iterator[torch.Tensor]:
        """forward() streamed over bands of `band` latent rows (models/rows.py): the image's rows in
        order, in parts of 16 * band rows; each output computed once, memory bounded by the band."""
        if band >= y_hat.shape[2]:  # one band: the forward itself
            yield self(y_hat, guidance)
            return
        chain = rows.stages(self.layers(guidance))
        for part in rows.stream(chain, y_hat, band):
            yield to_unit(part)


def to_unit(h: torch.Tensor) -> torch.Tensor:
    """The last layer's [-1, 1] to pixels in [0, 1]."""
    return (h + 1.0) * 0.5
