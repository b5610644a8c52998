"""The fidelity guidance module: the fidelity decoder D_a, the frozen ViT F and the projection F_p.

D_a alone is a complete fast decoder (the `fidelity` decode path and the bundled sodec-lite);
in the full model its output x_f also steers the UNet through guidance tokens c_g that take the
place of SD's text embeddings in cross-attention.
"""

from __future__ import annotations

import torch
from compressai.layers import GDN
from torch import nn


def _up(cin: int, cout: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1)


class FidelityDecoder(nn.Module):
    """D_a: y_hat -> x_f in [0, 1] (mirror of E with inverse GDN)."""

    def __init__(self, latent: int, widths: tuple[int, int, int]) -> None:
        super().__init__()
        c0, c1, c2 = widths
        self.net = nn.Sequential(_up(latent, c0), GDN(c0, inverse=True), _up(c0, c1), GDN(c1, inverse=True),
                                 _up(c1, c2), GDN(c2, inverse=True), _up(c2, 3))

    def forward(self, y_hat: torch.Tensor) -> torch.Tensor:
        return (self.net(y_hat) + 1.0) * 0.5
