"""Residual blocks shared by the networks: E and D_a's latent and 1/8-grid blocks, T_s's body.

Identity-initialised blocks can be added to a trained network without changing its output, which is
how releases grow (train.trainer.warm_start).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResBlock(nn.Module):
    """x + conv(silu(conv(silu(x)))); `identity=True` zeroes the last conv, so that the block
    starts as the identity and can be added to a trained network without changing its output."""

    def __init__(self, ch: int, identity: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)
        if identity:
            nn.init.zeros_(self.conv2.weight)
            nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


def identity_blocks(ch: int, n: int) -> nn.Sequential | None:
    """`n` identity-initialised residual blocks (None when n is 0, so that models without them
    keep their state-dict keys)."""
    return nn.Sequential(*(ResBlock(ch, identity=True) for _ in range(n))) if n else None
