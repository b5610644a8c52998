"""Encoder-side latent refinement, the `effort` option of compress.

The analysis transform guesses the latents in one shot; a search finds latents that cost fewer bits
for the same distortion (Campos et al., "Content adaptive optimization for neural image
compression", 2019; Yang et al., "Improving inference for neural image compression", 2020). Only the
encoder works harder: the decoder and the format are untouched, so a refined file decodes with the
released model exactly as any other, and every reader of .sdc files reads it.

The search minimises the training loss of the fidelity path at the file's rate position (models/objective.py,
with the MS-SSIM weight the model was trained with), with Adam on y and z, the
rate measured with uniform noise (as in training) and the decoder fed rounded latents with a
straight-through gradient. Every CHECK_EVERY steps the loss of the really rounded latents is
measured and the best latents seen are kept, so refinement never returns worse latents (by that
loss) than it was given. Large images are refined in tiles of the latent grid with a margin of
fixed neighbours, so memory stays bounded however large the photo.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..config import LATENT_CELL
from ..metrics import MS_SSIM_MIN_SIDE  # (pure Python: the size pytorch_msssim's five scales need)
from ..rates import MAX_EFFORT, check_effort
from .latent_codec import Z_CELL
from .objective import distortion, rate_distortion

# Steps of the search at each effort (0 = the analysis transform alone). On 6 Kodak images with
# sodec-lite-11 (README, "Encoder effort") the gain grows slowly with steps: 15 steps -1.8% / -1.4%,
# 40 steps -2.3% / -1.6% (BD-rate PSNR / MS-SSIM, before the step sizes below were tuned).
EFFORT_STEPS = (0, 5, 10, 15, 20, 30, 40, 60, 80, 100)
assert len(EFFORT_STEPS) == MAX_EFFORT + 1
# Adam's step sizes, in latent units (y before its gain, z before its hyper gain). Tuned on two Kodak
# images at two qualities, effort 4 (mean BD-rate PSNR / MS-SSIM against sodec-lite-11's curve):
# y 0.005, z 0.03: -3.0% / -2.6%; y 0.01, z 0.01: -2.7% / -1.9%; y 0.02: -1.5% / -0.8%; y 0.0025:
# -2.5% / -2.3%; z 0.1: no gain (every check worse than the start); steps scaled by the gain: -1.2% / -0.5%.
Y_LEARNING_RATE = 0.005
Z_LEARNING_RATE = 0.03
CHECK_EVERY = 10
# Tiles of the latent grid (cells of 16 px; multiples of Z_CELL, the hyper latent's cell): a 768x512
# photo is one tile; the margin of fixed neighbours covers most of what the decoder and the prior
# see of a tile's latents.
TILE_CELLS = 48
MARGIN_CELLS = 4
SEED = 0


def steps_for_effort(effort: int) -> int:
    check_effort(effort)
    return EFFORT_STEPS[effort]


class RefinementLoss:
    """The search's loss for one image at one rate position (training loss of the fidelity path, with
    the model's own `ms_ssim_weight`)."""

    def __init__(self, compression: nn.Module, decoder: nn.Module, position: int, *, ms_ssim_weight: float) -> None:
        lc, cfg = compression.codec, compression.cfg
        self.compression, self.decoder = compression, decoder
        dev = compression.gain.device
        self.gains = {
            "gain": lc.exact_gain(position).float().to(dev)[None, :, None, None],
            "inverse_gain": lc.inverse_gain_at(position).float().to(dev)[None, :, None, None],
            "z_gain": (lc.exact_gain(position, compression.z_gain).float().to(dev)[None, :, None, None]
                       if cfg.hyper_gain else None),
        }
        self.lam = lc.rate_lambda_at(position)
        self.ms_ssim_weight = ms_ssim_weight

    def __call__(self, y: torch.Tensor, z: torch.Tensor, x: torch.Tensor, noise: bool) -> torch.Tensor:
        """x: the target pixels (float in [0, 1]) the window's top-left part decodes to; pixels
        beyond x (padding) do not count."""
        out = self.compression.latent_forward(y, z, noise=noise, **self.gains)
        h, w = x.shape[-2:]
        x_hat = self.decoder(out["y_hat"])[..., :h, :w]
        # windows too small for MS-SSIM's five scales are searched for MSE alone
        dist, _, _ = distortion(x_hat, x, self.ms_ssim_weight if min(h, w) >= MS_SSIM_MIN_SIDE else 0.0)
        bits = sum(-torch.log2(out[k]).sum() for k in ("y_likelihoods", "z_likelihoods"))
        return rate_distortion(dist, bits / (h * w), self.lam)[0]


def _spans(n: int, tile: int) -> list[tuple[int, int]]:
    return [(a, min(n, a + tile)) for a in range(0, n, tile)]


@torch.enable_grad()
def refine_latents(compression: nn.Module, decoder: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   z: torch.Tensor, *, position: int, steps: int, height: int, width: int, ms_ssim_weight: float,
                   progress: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Refined (y, z) for the padded uint8 image x (1, 3, H, W) whose real size is height x width;
    y and z as the analysis transforms gave them (float, on the model's device); `ms_ssim_weight`
    the model's (SODECModel.ms_ssim_weight). `progress(done, total)` is called after each step (and
    may raise to cancel)."""
    if steps <= 0:
        return y, z
    cell, zc = LATENT_CELL, Z_CELL
    loss_of = RefinementLoss(compression, decoder, position, ms_ssim_weight=ms_ssim_weight)
    y, z = y.detach().float().clone(), z.detach().float().clone()
    gen = torch.Generator(device="cpu").manual_seed(SEED)
    rows, cols = _spans(y.shape[-2], TILE_CELLS), _spans(y.shape[-1], TILE_CELLS)
    total, done = len(rows) * len(cols) * steps, 0
    for r0, r1 in rows:
        for c0, c1 in cols:
            wr0, wc0 = max(0, r0 - MARGIN_CELLS), max(0, c0 - MARGIN_CELLS)
            wr1, wc1 = min(y.shape[-2], r1 + MARGIN_CELLS), min(y.shape[-1], c1 + MARGIN_CELLS)
            ph, pw = min(height, wr1 * cell) - wr0 * cell, min(width, wc1 * cell) - wc0 * cell
            target = x[..., wr0 * cell:wr0 * cell + ph, wc0 * cell:wc0 * cell + pw].to(y.device).float() / 255.0
            core = (slice(r0 - wr0, r1 - wr0), slice(c0 - wc0, c1 - wc0))
            zcore = (slice((r0 - wr0) // zc, -(-(r1 - wr0) // zc)), slice((c0 - wc0) // zc, -(-(c1 - wc0) // zc)))
            y_win = y[..., wr0:wr1, wc0:wc1]
            z_win = z[..., wr0 // zc:-(-wr1 // zc), wc0 // zc:-(-wc1 // zc)]
            y_var = y_win[(..., *core)].clone().requires_grad_(True)
            z_var = z_win[(..., *zcore)].clone().requires_grad_(True)

            def window(y_var: torch.Tensor = y_var, z_var: torch.Tensor = z_var, y_win: torch.Tensor = y_win,
                       z_win: torch.Tensor = z_win, core: tuple = core, zcore: tuple = zcore
                       ) -> tuple[torch.Tensor, torch.Tensor]:
                yw, zw = y_win.clone(), z_win.clone()
                yw[(..., *core)] = y_var
                zw[(..., *zcore)] = z_var
                return yw, zw

            best = (math.inf, y_var.detach().clone(), z_var.detach().clone())
            opt = torch.optim.Adam([{"params": [y_var], "lr": Y_LEARNING_RATE},
                                    {"params": [z_var], "lr": Z_LEARNING_RATE}])
            for step in range(steps + 1):
                if step % CHECK_EVERY == 0 or step == steps:
                    with torch.no_grad():
                        hard = float(loss_of(*window(), target, noise=False))
                    if hard < best[0]:
                        best = (hard, y_var.detach().clone(), z_var.detach().clone())
                if step == steps:
                    break
                with _seeded_noise(gen):
                    loss = loss_of(*window(), target, noise=True)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                done += 1
                if progress is not None:
                    progress(done, total)
            y_win[(..., *core)] = best[1]
            z_win[(..., *zcore)] = best[2]
    return y, z


class _seeded_noise:
    """Draw the training noise from `gen` so that a refinement is repeatable on one machine."""

    def __init__(self, gen: torch.Generator) -> None:
        self.gen = gen

    def __enter__(self) -> None:
        self.state = torch.random.get_rng_state()
        torch.random.set_rng_state(self.gen.get_state())

    def __exit__(self, *exc: object) -> None:
        self.gen.set_state(torch.random.get_rng_state())
        torch.random.set_rng_state(self.state)
