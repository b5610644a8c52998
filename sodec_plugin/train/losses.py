"""Training losses: distortion (MSE + LPIPS when its weights are local), PatchGAN discriminator."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn


def load_lpips() -> nn.Module | None:
    """LPIPS(alex) when the `lpips` package and the AlexNet weights are already on disk; None
    (with a warning saying what is missing) otherwise. Never downloads."""
    from ..metrics import lpips_unavailable, make_lpips

    why = lpips_unavailable()
    if why:
        warnings.warn(f"LPIPS unavailable ({why}); training with MSE only", stacklevel=2)
        return None
    return make_lpips()


class Distortion(nn.Module):
    """d = k_M * MSE(0..255 scale) + k_P * LPIPS (HiFiC's weighting)."""

    def __init__(self, k_mse: float, k_lpips: float) -> None:
        super().__init__()
        self.k_mse, self.k_lpips = k_mse, k_lpips
        self.lpips = load_lpips() if k_lpips > 0 else None

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        mse = F.mse_loss(x_hat, x)
        loss = self.k_mse * mse
        values = {"mse": mse.item()}
        if self.lpips is not None:
            lp = self.lpips(x_hat * 2 - 1, x * 2 - 1).mean()
            loss = loss + self.k_lpips * lp
            values["lpips"] = lp.item()
        return loss, values


class PatchDiscriminator(nn.Module):
    """A small PatchGAN (hinge loss) for the last part of stage 3."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm
        self.net = nn.Sequential(
            sn(nn.Conv2d(3, width, 4, 2, 1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(width, width * 2, 4, 2, 1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(width * 2, width * 4, 4, 2, 1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(width * 4, 1, 3, 1, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1)
