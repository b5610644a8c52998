"""The three stages of the rate-annealing recipe, side by side behind one small interface: a stage
is built from a `TrainingRun` (what it needs of the Trainer: the model, configs, device and one
optimizer update), holds `optimizers` (the first gets the schedule's learning rate) and does one
`step(x, step) -> StepResult`. Stage 1 trains the compression module and the fidelity decoder;
stages 2 and 3 the diffusion path. The Trainer imports this module, never the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from ..config import SODECConfig
from ..metrics import MS_SSIM_MIN_SIDE, PERCEPTUAL_MIN_SIDE
from ..models.objective import distortion, rate_distortion
from ..models.sodec import DIFFUSION_PREFIX, SODECModel
from .losses import Distortion, PatchDiscriminator
from .recipe import StageRecipe, TrainRecipe


class TrainingRun(Protocol):
    """All a stage may use of the run that owns it (the Trainer is one)."""

    model: SODECModel
    cfg: SODECConfig
    recipe: TrainRecipe
    sr: StageRecipe  # this stage's part of the recipe
    device: torch.device

    def update(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, clip: float | None = None) -> None:
        """One optimizer step on `loss` (loss scaling, gradients averaged over processes, clipping)."""


@dataclass
class StepResult:
    loss: float
    values: dict[str, float]


def bits_per_pixel(likelihoods: torch.Tensor, pixels: int) -> torch.Tensor:
    """Per-sample bits per pixel from likelihoods (B, ...)."""
    return -torch.log2(likelihoods).flatten(1).sum(1) / pixels


class Stage1:
    """Compression module + fidelity decoder at every rate point: the fidelity path's
    rate-distortion objective (models/objective.py) with the recipe's ms_ssim_weight.

    With the recipe's stage1_trains "encoder", only E and H_a learn: everything a decoder reads stays as
    the starting model has it, so the one-shot encoder learns the latents a search (`effort`) would
    find, for the decoder that is already there."""

    def __init__(self, t: TrainingRun) -> None:
        self.t = t
        comp = t.model.compression
        self.encoder_only = t.recipe.stage1_trains == "encoder"
        if self.encoder_only:
            t.model.requires_grad_(False)
            params = [*comp.analysis.parameters(), *comp.hyper_analysis.parameters()]
            for p in params:
                p.requires_grad_(True)
            self.optimizers = [torch.optim.Adam(params, lr=t.sr.lr)]
        else:
            params = [p for n, p in t.model.named_parameters()
                      if not n.endswith("quantiles") and not n.startswith(DIFFUSION_PREFIX)]
            self.optimizers = [torch.optim.Adam(params, lr=t.sr.lr),
                               torch.optim.Adam([comp.entropy_bottleneck.quantiles], lr=t.recipe.aux_lr)]
        self.lambdas = torch.tensor(t.cfg.rate_lambdas, device=t.device)
        self.ssimulacra2_as_mse = None  # resolved once here, not in every step
        if t.recipe.ssimulacra2_weight:
            from .perceptual import ssimulacra2_as_mse

            self.ssimulacra2_as_mse = ssimulacra2_as_mse
        for name, side in (("ms_ssim_weight", MS_SSIM_MIN_SIDE), ("ssimulacra2_weight", PERCEPTUAL_MIN_SIDE)):
            if getattr(t.recipe, name) and t.sr.crop < side:
                raise ValueError(f"{name} needs crops of at least {side} px, not {t.sr.crop}")

    def step(self, x: torch.Tensor, step: int) -> StepResult:
        m, comp = self.t.model, self.t.model.compression
        g = torch.Generator().manual_seed(self.t.recipe.seed * 7919 + step)
        r = torch.randint(0, self.t.cfg.num_rates, (x.shape[0],), generator=g).to(x.device)
        out = comp(x, r)
        x_f = m.fidelity_decoder(out["y_hat"])
        bpp = _sum_bpp(out, x.shape[-1] * x.shape[-2])
        dist, mse, msssim = distortion(x_f, x, self.t.recipe.ms_ssim_weight)
        score = None
        if self.ssimulacra2_as_mse is not None:
            term, score = self.ssimulacra2_as_mse(x_f, x, mse)
            dist = dist + self.t.recipe.ssimulacra2_weight * term
        loss = rate_distortion(dist, bpp, self.lambdas[r]).mean()
        self.t.update(loss, self.optimizers[0], self.t.recipe.grad_clip)
        psnr = (-10 * torch.log10(mse.detach().clamp(min=1e-10))).mean().item()
        values = {"bpp": bpp.mean().item(), "psnr": psnr}
        if not self.encoder_only:  # the entropy bottleneck's quantiles are the decoder's too
            aux = comp.entropy_bottleneck.loss()
            self.t.update(aux, self.optimizers[1])
            values["aux"] = aux.item()
        if msssim is not None:
            values["ms_ssim"] = msssim.detach().mean().item()
        if score is not None:
            values["ssimulacra2"] = score.detach().mean().item()
        return StepResult(loss.item(), values)


def _prepare_diffusion(t: TrainingRun) -> None:
    m = t.model
    if m.diffusion is None:
        raise ValueError(f"config {t.cfg.name!r} has no diffusion path: stages 2 and 3 need one")
    d = m.diffusion
    if d.unet is None:
        d.load_base()
        d.add_lora()
    d.unet.to(t.device)
    d.vae.to(t.device)
    d.vit.to(t.device)
    if t.recipe.gradient_checkpointing and hasattr(d.unet, "enable_gradient_checkpointing"):
        d.unet.enable_gradient_checkpointing()
    for p in d.unet.parameters():
        p.requires_grad_(False)
    for n, p in d.unet.named_parameters():
        if "lora_" in n:
            p.requires_grad_(True)


def _autocast(t: TrainingRun) -> torch.autocast:
    mp = t.recipe.mixed_precision
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mp)
    return torch.autocast(t.device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def _diffusion_params(t: TrainingRun) -> list[torch.nn.Parameter]:
    d = t.model.diffusion
    params = [p for p in d.parameters()] + [p for p in d.unet.parameters() if p.requires_grad]
    return params + list(t.model.fidelity_decoder.parameters())


def _sum_bpp(out: dict[str, torch.Tensor], pixels: int) -> torch.Tensor:

    return bits_per_pixel(out["y_likelihoods"], pixels) + bits_per_pixel(out["z_likelihoods"], pixels)


class Stage2:
    """Compression module frozen; LoRA, H_s, T_s, D_a, F_p trained with the distortion only."""

    def __init__(self, t: TrainingRun) -> None:
        self.t = t
        _prepare_diffusion(t)
        t.model.compression.requires_grad_(False)
        self.distortion = Distortion(t.recipe.k_mse, t.recipe.k_lpips).to(t.device)
        self.optimizers = [torch.optim.AdamW(_diffusion_params(t), lr=t.sr.lr)]

    def step(self, x: torch.Tensor, step: int) -> StepResult:
        m = self.t.model
        r = torch.full((x.shape[0],), self.t.recipe.target_rate_index, device=x.device)
        with torch.no_grad():
            out = m.compression(x, r)
        with _autocast(self.t):
            x_f = m.fidelity_decoder(out["y_hat"])
            x_hat = m.diffusion(out["y_hat"], out["z_hat"], x_f, 1.0)
            loss, values = self.distortion(x_hat.float(), x)
        self.t.update(loss, self.optimizers[0], self.t.recipe.grad_clip)
        return StepResult(loss.item(), values)


class Stage3:
    """End to end: d(x, x_hat) + w_rate * bpp + alpha * MSE(x, x_f), w_rate annealed upwards
    through `rate_weights`, then a GAN loss in the last `gan_fraction` of the steps."""

    def __init__(self, t: TrainingRun) -> None:
        self.t = t
        _prepare_diffusion(t)
        self.distortion = Distortion(t.recipe.k_mse, t.recipe.k_lpips).to(t.device)
        comp = t.model.compression
        main = [p for n, p in comp.named_parameters() if not n.endswith("quantiles")] + _diffusion_params(t)
        self.disc = PatchDiscriminator().to(t.device)
        self.extra_modules = {"discriminator": self.disc}
        self.optimizers = [torch.optim.AdamW(main, lr=t.sr.lr),
                           torch.optim.Adam([comp.entropy_bottleneck.quantiles], lr=t.recipe.aux_lr),
                           torch.optim.Adam(self.disc.parameters(), lr=t.sr.lr, betas=(0.5, 0.999))]

    def rate_weight(self, step: int) -> float:
        w = self.t.recipe.rate_weights
        return w[min(len(w) - 1, step * len(w) // self.t.sr.steps)]

    def gan_active(self, step: int) -> bool:
        return step >= (1.0 - self.t.recipe.gan_fraction) * self.t.sr.steps

    def step(self, x: torch.Tensor, step: int) -> StepResult:
        m, rec = self.t.model, self.t.recipe
        r = torch.full((x.shape[0],), rec.target_rate_index, device=x.device)
        opt, aux_opt, d_opt = self.optimizers
        with _autocast(self.t):
            out = m.compression(x, r)
            x_f = m.fidelity_decoder(out["y_hat"])
            x_hat = m.diffusion(out["y_hat"], out["z_hat"], x_f, 1.0)
            dist, values = self.distortion(x_hat.float(), x)
            bpp = _sum_bpp(out, x.shape[-1] * x.shape[-2]).mean()
            align = F.mse_loss(x_f.float(), x) * 255**2
            w = self.rate_weight(step)
            loss = dist + w * bpp + rec.align_weight * align
            gan = self.gan_active(step)
            if gan:
                g_loss = -self.disc(x_hat.float()).mean()
                loss = loss + rec.gan_weight * g_loss
        self.t.update(loss, opt, rec.grad_clip)
        self.t.update(m.compression.entropy_bottleneck.loss(), aux_opt)
        if gan:
            d_loss = F.relu(1 - self.disc(x)).mean() + F.relu(1 + self.disc(x_hat.detach().float())).mean()
            self.t.update(d_loss, d_opt)
            values["d_loss"] = d_loss.item()
        else:
            values["d_loss"] = float("nan")
        values.update({"bpp": bpp.item(), "rate_weight": w, "align": align.item()})
        return StepResult(loss.item(), values)


STAGES = {1: Stage1, 2: Stage2, 3: Stage3}
