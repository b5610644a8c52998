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

from ..models.objective import DEFAULT_MS_SSIM_WEIGHT
from ..releases import ENTRIES

MIXED_PRECISIONS = ("no", "bf16", "fp16")
# What stage 1 trains: the whole fidelity path, or its encoder alone (TrainRecipe.stage1_trains).
STAGE1_PARTS = ("all", "encoder")
# `sodec train --stage` of the decoder-only stage (the others are numbered 1-3).
DECODER_STAGE = "decoder"


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
    ms_ssim_weight: float = DEFAULT_MS_SSIM_WEIGHT
    # Stage 1's distortion also counts SSIMULACRA2 (train/perceptual.py, ssimulacra2_as_mse), at this weight:
    # 1 trades a dB's worth of SSIMULACRA2 points as the MSE term trades a dB of PSNR. Needs the `ssimulacra2`
    # package (the eval extra); crops of 225 px or more give it all 6 of its scales.
    ssimulacra2_weight: float = 0.0
    # "encoder": stage 1 trains the analysis transform E and hyper analysis H_a alone, the decoder, the
    # entropy models, prior, context model and gains frozen (see train/stages.py): a better encoder for
    # what the parent's decoder already draws, files decoded by the same decoder weights.
    stage1_trains: str = "all"
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
    # The decoder stage (`sodec train --stage decoder`, train/guided_decoder.py): the fidelity decoder
    # alone, reading the guidance (the config's guidance_channels), on latents the codec coded from
    # `latent_crops` crops: one count per subfolder of the data folder (in name order), or one count
    # for the whole folder. The guidance modulation learns at `modulation_lr`.
    decoder: StageRecipe = field(default_factory=lambda: StageRecipe(steps=1500, lr=3e-5, lr_drops=(), batch_size=8,
                                                                     crop=256))
    modulation_lr: float = 5e-4
    latent_crops: tuple[int, ...] = (4000,)

    def __post_init__(self) -> None:
        if self.ms_ssim_weight < 0:
            raise ValueError(f"ms_ssim_weight must be >= 0, not {self.ms_ssim_weight}")
        if self.mixed_precision not in MIXED_PRECISIONS:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISIONS}, not {self.mixed_precision!r}")
        if self.ssimulacra2_weight < 0:
            raise ValueError(f"ssimulacra2_weight must be >= 0, not {self.ssimulacra2_weight}")
        if self.stage1_trains not in STAGE1_PARTS:
            raise ValueError(f"stage1_trains must be one of {STAGE1_PARTS}, not {self.stage1_trains!r}")

    def stage(self, n: int | str) -> StageRecipe:
        return {1: self.stage1, 2: self.stage2, 3: self.stage3, DECODER_STAGE: self.decoder}[n]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainRecipe:
        d = dict(d)
        for k in ("stage1", "stage2", "stage3", "decoder"):
            if k in d and isinstance(d[k], dict):
                s = dict(d[k])
                if "lr_drops" in s:
                    s["lr_drops"] = tuple(s["lr_drops"])
                d[k] = StageRecipe(**s)
        for k in ("rate_weights", "latent_crops"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> TrainRecipe:
        return cls.from_dict(json.loads(Path(path).read_text()))


def builtin_recipes() -> dict[str, TrainRecipe]:
    """Every release's and candidate's recipe (from its entry in releases.py), `tiny` (tests) and
    `sodec-sd21` (the paper's model)."""
    tiny = TrainRecipe(checkpoint_every=2, log_every=1,
                       stage1=StageRecipe(steps=4, lr=1e-3, batch_size=2, crop=64),
                       stage2=StageRecipe(steps=4, lr=1e-3, batch_size=1, crop=64),
                       stage3=StageRecipe(steps=8, lr=1e-3, batch_size=1, crop=64),
                       rate_weights=(0.01, 10.0), gan_fraction=0.25,
                       decoder=StageRecipe(steps=4, lr=1e-3, lr_drops=(), batch_size=3, crop=64), modulation_lr=1e-2,
                       latent_crops=(6,))
    models = {name: TrainRecipe.from_dict(entry.recipe) for name, entry in ENTRIES.items()}
    return {**models, "tiny": tiny, "sodec-sd21": TrainRecipe(mixed_precision="bf16")}
