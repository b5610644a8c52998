"""The fidelity decoder D_a: y_hat -> an image, fast. Alone it is a complete decoder (the `fidelity`
decode path, and every fidelity-only release); in the full model its output also guides the UNet
(models/guidance.py).
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


class FidelityDecoder(nn.Module):
    """D_a: y_hat -> x_f in [0, 1] (`blocks` residual blocks on the latent grid, then the mirror
    of E with inverse GDN, with `blocks_1_8` residual blocks after its first upsampling)."""

    def __init__(self, latent: int, widths: tuple[int, int, int], blocks: int = 0, blocks_1_8: int = 0) -> None:
        super().__init__()
        c0, c1, c2 = widths
        self.blocks = identity_blocks(latent, blocks)
        # A separate module rather than layers inside `net`, so that `net`'s keys stay those of
        # the models released without it.
        self.blocks_1_8 = identity_blocks(c0, blocks_1_8)
        self.net = nn.Sequential(_up(latent, c0), GDN(c0, inverse=True), _up(c0, c1), GDN(c1, inverse=True),
                                 _up(c1, c2), GDN(c2, inverse=True), _up(c2, 3))

    def layers(self) -> list[nn.Module]:
        """The layers in the order forward() runs them."""
        return [*(self.blocks or ()), *self.net[:2], *(self.blocks_1_8 or ()), *self.net[2:]]

    def forward(self, y_hat: torch.Tensor) -> torch.Tensor:
        h = y_hat if self.blocks is None else self.blocks(y_hat)
        if self.blocks_1_8 is None:
            h = self.net(h)
        else:
            h = self.net[2:](self.blocks_1_8(self.net[:2](h)))
        return to_unit(h)

    def rows(self, y_hat: torch.Tensor, band: int) -> Iterator[torch.Tensor]:
        """forward() streamed over bands of `band` latent rows (models/rows.py): the image's rows in
        order, in parts of 16 * band rows; each output computed once, memory bounded by the band."""
        if band >= y_hat.shape[2]:  # one band: the forward itself
            yield self(y_hat)
            return
        chain = rows.stages(self.layers())
        for part in rows.stream(chain, y_hat, band):
            yield to_unit(part)


def to_unit(h: torch.Tensor) -> torch.Tensor:
    """The last layer's [-1, 1] to pixels in [0, 1]."""
    return (h + 1.0) * 0.5
