"""The training recipe: every weight and schedule of the three rate-annealing stages.

The paper publishes none of these values; the defaults are this project's and are recorded in
the weights' metadata of every model trained with them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIXED_PRECISIONS = ("no", "bf16", "fp16")


@dataclass
class StageRecipe:
    steps: int
    lr: float
    # lr is multiplied by 0.1 at each of these fractions of `steps`.
    lr_drops: tuple[float, ...] = (0.85,)
    batch_size: int = 8
    crop: int = 128


@dataclass
class TrainRecipe:
    seed: int = 0
    downscale: float = 0.75
    # Each crop at a random scale in [random_downscale, 1] of the (downscaled) photo; 1 is off.
    random_downscale: float = 1.0
    grad_clip: float = 1.0
    aux_lr: float = 1e-3
    checkpoint_every: int = 250
    log_every: int = 50
    mixed_precision: str = "no"  # one of MIXED_PRECISIONS; fp16 adds loss scaling
    gradient_checkpointing: bool = True
    # Stage 1: compression module + fidelity decoder, all rate points of the config at once.
    stage1: StageRecipe = field(default_factory=lambda: StageRecipe(steps=13000, lr=5e-4))
    # Stage 1's distortion is MSE + ms_ssim_weight * (1 - MS-SSIM), both on [0, 1] pixels: 0 trains
    # for PSNR alone; 0.02 gives the MS-SSIM term the weight CompressAI's MS-SSIM models give it
    # (their lambdas are 0.019-0.021 x 255^2 x those of their MSE models, quality for quality).
    # Needs crops of at least 161 px (5 MS-SSIM scales).
    ms_ssim_weight: float = 0.0
    # Stage 2: diffusion path with distortion only: d = k_M * MSE + k_P * LPIPS (HiFiC weights).
    stage2: StageRecipe = field(default_factory=lambda: StageRecipe(steps=20000, lr=5e-5, crop=512, batch_size=4))
    k_mse: float = 0.075 * 2**-5 * 255**2
    k_lpips: float = 1.0
    # Stage 3: end to end, rate weight annealed from the first to the last value (bits/pixel
    # weight), MSE alignment on the fidelity decoder, GAN loss in the last `gan_fraction`.
    stage3: StageRecipe = field(default_factory=lambda: StageRecipe(steps=20000, lr=2e-5, crop=512, batch_size=4))
    rate_weights: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    align_weight: float = 1.0
    gan_weight: float = 0.01
    gan_fraction: float = 0.25
    # Stage 3 trains one rate point of the config (the paper trains one model per rate).
    target_rate_index: int = 0

    def __post_init__(self) -> None:
        if self.ms_ssim_weight < 0:
            raise ValueError(f"ms_ssim_weight must be >= 0, not {self.ms_ssim_weight}")
        if self.mixed_precision not in MIXED_PRECISIONS:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISIONS}, not {self.mixed_precision!r}")

    def stage(self, n: int) -> StageRecipe:
        return {1: self.stage1, 2: self.stage2, 3: self.stage3}[n]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainRecipe:
        d = dict(d)
        for k in ("stage1", "stage2", "stage3"):
            if k in d and isinstance(d[k], dict):
                s = dict(d[k])
                if "lr_drops" in s:
                    s["lr_drops"] = tuple(s["lr_drops"])
                d[k] = StageRecipe(**s)
        if "rate_weights" in d:
            d["rate_weights"] = tuple(d["rate_weights"])
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> TrainRecipe:
        return cls.from_dict(json.loads(Path(path).read_text()))


def builtin_recipes() -> dict[str, TrainRecipe]:
    tiny = TrainRecipe(checkpoint_every=2, log_every=1,
                       stage1=StageRecipe(steps=4, lr=1e-3, batch_size=2, crop=64),
                       stage2=StageRecipe(steps=4, lr=1e-3, batch_size=1, crop=64),
                       stage3=StageRecipe(steps=8, lr=1e-3, batch_size=1, crop=64),
                       rate_weights=(0.01, 10.0), gan_fraction=0.25)
    def crops256(seed: int, steps: int) -> TrainRecipe:
        """Continue a released model on 256 px crops (batch 2), lr 1e-4 dropped at 70%."""
        return TrainRecipe(seed=seed, stage1=StageRecipe(steps=steps, lr=1e-4, lr_drops=(0.7,), batch_size=2, crop=256))

    # sodec-lite-2 continues sodec-lite (`--init-from sodec_plugin/weights/sodec-lite`) at a lower lr.
    lite2 = TrainRecipe(seed=2, stage1=StageRecipe(steps=14500, lr=1e-4, lr_drops=(0.7,)))
    # sodec-lite-3 continues sodec-lite-2 (`--init-from sodec_plugin/weights/sodec-lite-2`): back to
    # 1e-4 (the model is far from converged), then a second drop, on 256 px crops (batch 2, the same
    # pixels per step). Measured against the same run on 128 px crops (batch 8, seed 3), both
    # 12,500 steps from sodec-lite-2: BD-rate on Kodak -26.0% vs -12.2% against sodec-lite-2. At
    # 128 px the hyper latent z is 2x2, so the hyperprior never sees the context of a real photo.
    lite3 = crops256(4, 12500)
    # sodec-lite-4 continues sodec-lite-3 (`--init-from sodec_plugin/weights/sodec-lite-3`) on 256 px crops
    # for longer: BD-rate on Kodak -5.1% (PSNR) / -5.2% (MS-SSIM) against sodec-lite-3.
    lite4 = crops256(5, 25000)
    # sodec-lite-5 adds a checkerboard context model to sodec-lite-4 (`--init-from
    # sodec_plugin/weights/sodec-lite-4`: it starts as sodec-lite-4 and learns the context), on 256 px
    # crops: BD-rate on Kodak -12.4% (PSNR) / -10.0% (MS-SSIM) against sodec-lite-4.
    lite5 = crops256(6, 30000)
    # sodec-lite-6 continues sodec-lite-5 (`--init-from sodec_plugin/weights/sodec-lite-5`) on 256 px crops:
    # BD-rate on Kodak -3.1% (PSNR) / -3.0% (MS-SSIM) against sodec-lite-5.
    lite6 = crops256(7, 30000)
    # sodec-lite-7 continues sodec-lite-6 (`--init-from sodec_plugin/weights/sodec-lite-6`) on a GPU:
    # batch 16 (8x the crops per step), on the 500 BSDS500 photos of the training folder (the subset
    # that fits a GPU machine's upload), 36,000 steps (23 min on one H100). BD-rate on Kodak -5.9%
    # (PSNR) / -3.6% (MS-SSIM) against sodec-lite-6.
    lite7 = TrainRecipe(seed=9, stage1=StageRecipe(steps=36000, lr=1e-4, lr_drops=(0.7,), batch_size=16, crop=256))
    # sodec-lite-8 continues sodec-lite-7 (`--init-from sodec_plugin/weights/sodec-lite-7`) with MS-SSIM
    # in the distortion (ms_ssim_weight 0.01), on all of the training folder. BD-rate on Kodak -11.8%
    # (MS-SSIM) / -0.6% (PSNR) against sodec-lite-7.
    lite8 = dataclasses.replace(crops256(10, 8000), ms_ssim_weight=0.01)
    # sodec-lite-9 is sodec-lite-8 (`--init-from sodec_plugin/weights/sodec-lite-8`) with residual blocks
    # on the latent grid (they start as the identity) and ms_ssim_weight 0.015, on all of the training
    # folder. BD-rate on Kodak -5.4% (MS-SSIM) / -0.0% (PSNR) against sodec-lite-8. Tried before on
    # sodec-lite-8's network, ms_ssim_weight 0.025 alone (probe at step 5,250 of 20,000, lr still 1e-4):
    # -5.1% (MS-SSIM) but +8.7% (PSNR) against sodec-lite-8.
    lite9 = dataclasses.replace(crops256(12, 15000), ms_ssim_weight=0.015)
    # sodec-lite-10 is sodec-lite-9 continued (`--init-from sodec_plugin/weights/sodec-lite-9`) with
    # ms_ssim_weight 0.02, for the AVIF MS-SSIM target, on all of the training folder. BD-rate on Kodak
    # -3.5% (MS-SSIM) / -0.0% (PSNR) against sodec-lite-9; against AVIF -9.5% (MS-SSIM) / +8.5% (PSNR).
    lite10 = dataclasses.replace(crops256(13, 15000), ms_ssim_weight=0.02)
    # sodec-lite-11 is sodec-lite-10 (`--init-from sodec_plugin/weights/sodec-lite-10`) with three blocks
    # on D_a's 1/8 grid and a hyper gain, same loss, 10,000 steps (1.9 it/s on 2 cores: 1 h 27 min).
    # BD-rate on Kodak -1.2% (MS-SSIM) / -0.6% (PSNR) against sodec-lite-10; against AVIF -10.5%
    # (MS-SSIM) / +8.0% (PSNR).
    lite11 = dataclasses.replace(crops256(14, 10000), ms_ssim_weight=0.02)
    # sodec-lite-12 (candidate) continues sodec-lite-11 (`--init-from sodec_plugin/weights/sodec-lite-11`)
    # on the training folder plus the high-resolution photos of docs/data.md, each crop at a random
    # scale down to 0.35 of the photo (stored at <= 2560 px, loaded at 0.75 of that). 8,000 steps, lr
    # dropped at 60%: what one CPU session (one torch thread, 1.7 it/s alone) can finish. The earlier
    # 12,000-step schedule never reached its drop: its probe at step 4,750 (lr 1e-4) was +2.1% (PSNR) / +1.5%
    # (MS-SSIM) BD-rate on Kodak and -1.5% / -2.8% on 10 CLIC images against sodec-lite-11.
    lite12 = TrainRecipe(seed=15, ms_ssim_weight=0.02, random_downscale=0.35,
                         stage1=StageRecipe(steps=8000, lr=1e-4, lr_drops=(0.6,), batch_size=2, crop=256))
    return {"sodec-lite": TrainRecipe(), "sodec-lite-2": lite2, "sodec-lite-3": lite3, "sodec-lite-4": lite4,
            "sodec-lite-5": lite5, "sodec-lite-6": lite6, "sodec-lite-7": lite7, "sodec-lite-8": lite8,
            "sodec-lite-9": lite9, "sodec-lite-10": lite10, "sodec-lite-11": lite11, "sodec-lite-12": lite12,
            "tiny": tiny,
            "sodec-sd21": TrainRecipe(mixed_precision="bf16")}
