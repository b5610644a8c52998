"""The rate-distortion objective of the fidelity path: what stage 1 trains (train/stages.py) and what
the encoder's latent search (`effort`, models/refinement.py) minimises for a released model.

loss = lambda * 255^2 * (MSE + w * (1 - MS-SSIM)) + bits per pixel, pixels in [0, 1], with w the
recipe's `ms_ssim_weight`. A search must use the weight its model was trained with (it differs
between releases), so a model carries the one recorded in its weights' metadata.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pure Python at import: the recipe reads the default below
    import torch

# The recipe's default (TrainRecipe.ms_ssim_weight): MSE alone.
DEFAULT_MS_SSIM_WEIGHT = 0.0


def recorded_ms_ssim_weight(training: dict[str, Any] | None) -> float:
    """The weight a model was trained with, from its weights' `training` metadata (the recipe the
    trainer recorded); the recipe default when none is recorded."""
    recipe = (training or {}).get("recipe") or {}
    return float(recipe.get("ms_ssim_weight", DEFAULT_MS_SSIM_WEIGHT))


def distortion(x_hat: torch.Tensor, x: torch.Tensor, ms_ssim_weight: float
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per-image distortion (B,), the MSE (B,) in it and, where the weight is not 0, the MS-SSIM (B,)."""
    mse = (x_hat - x).pow(2).flatten(1).mean(1)
    if not ms_ssim_weight:
        return mse, mse, None
    from pytorch_msssim import ms_ssim

    similarity = ms_ssim(x_hat, x, data_range=1.0, size_average=False)
    return mse + ms_ssim_weight * (1 - similarity), mse, similarity


def rate_distortion(dist: torch.Tensor, bpp: torch.Tensor, lam: torch.Tensor | float) -> torch.Tensor:
    """lambda * 255^2 * distortion + bits per pixel (per image)."""
    return lam * 255**2 * dist + bpp
