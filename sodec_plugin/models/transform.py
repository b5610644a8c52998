"""The transformation module: H_s (z_hat -> side feature w) and T_s ((y_hat, w) -> y_t).

T_s maps the codec latent on the H/16 grid into Stable Diffusion's latent space on the H/8 grid;
its output is read as the noisy latent at the configured timestep.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import ResBlock


class SideSynthesis(nn.Module):
    """H_s: z_hat at 1/64 -> w at 1/16 (two conv + pixel-shuffle upsamplings)."""

    def __init__(self, z_channels: int, side: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(z_channels, side * 4, 3, padding=1), nn.PixelShuffle(2), nn.SiLU(),
                                 nn.Conv2d(side, side * 4, 3, padding=1), nn.PixelShuffle(2), nn.SiLU(),
                                 nn.Conv2d(side, side, 3, padding=1))

    def forward(self, z_hat: torch.Tensor) -> torch.Tensor:
        return self.net(z_hat)


class LatentTransform(nn.Module):
    """T_s: concat(y_hat, w) at 1/16 -> SD latent at 1/8."""

    def __init__(self, latent: int, side: int, width: int, out_channels: int) -> None:
        super().__init__()
        self.inp = nn.Conv2d(latent + side, width, 3, padding=1)
        self.body = nn.Sequential(ResBlock(width), ResBlock(width))
        self.up = nn.Sequential(nn.Conv2d(width, width * 4, 3, padding=1), nn.PixelShuffle(2))
        self.out = nn.Sequential(ResBlock(width), nn.SiLU(), nn.Conv2d(width, out_channels, 3, padding=1))

    def forward(self, y_hat: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.out(self.up(self.body(self.inp(torch.cat([y_hat, w], dim=1)))))
