"""The one-step diffusion decoder: T_s -> SD UNet (+LoRA, guided by c_g) -> one DDPM step -> D_m.

The frozen base weights (UNet, VAE, ViT) come from their own repo ids and revisions through
diffusers/transformers; SODEC's own file holds only H_s, T_s, F_p, the null tokens and the LoRA
weights, which are fused into the UNet at load time (no adapter overhead at inference).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import SODECConfig
from .guidance import GuidanceProjection, load_vit
from .transform import LatentTransform, SideSynthesis

LORA_PREFIX = "lora."


class DiffusionDecoder(nn.Module):
    def __init__(self, cfg: SODECConfig) -> None:
        super().__init__()
        assert cfg.diffusion is not None
        d = self.dcfg = cfg.diffusion
        self.side_synthesis = SideSynthesis(cfg.hyper_latent_channels, d.side_channels)
        self.transform = LatentTransform(cfg.latent_channels, d.side_channels, d.transform_channels,
                                         d.sd_latent_channels)
        self.guidance_projection = GuidanceProjection(d.vit_hidden_size, d.guidance_tokens, d.guidance_dim,
                                                      d.guidance_heads)
        # c_g at strength 0: a learned "no guidance" prompt.
        self.null_tokens = nn.Parameter(torch.zeros(d.guidance_tokens, d.guidance_dim))
        abar = d.alpha_bar()
        self.sqrt_abar, self.sqrt_one_minus_abar = math.sqrt(abar), math.sqrt(1.0 - abar)
        # Frozen base networks, attached by load_base(); kept out of state_dict() on purpose.
        self.__dict__["unet"] = None
        self.__dict__["vae"] = None
        self.__dict__["vit"] = None
        self.__dict__["tiny_vae"] = None
        self._lora_state: dict[str, torch.Tensor] = {}
        self.lora_fused = False

    # ---- base weights and LoRA --------------------------------------------------------------
    def load_base(self, **kwargs: Any) -> None:
        """UNet and VAE (diffusers) and the ViT (transformers) from their repos; kwargs such as
        local_files_only or cache_dir are passed through to from_pretrained."""
        from diffusers import AutoencoderKL, UNet2DConditionModel

        d = self.dcfg
        unet = UNet2DConditionModel.from_pretrained(d.base_model, subfolder=d.unet_subfolder, revision=d.base_revision,
                                                    **kwargs)
        vae = AutoencoderKL.from_pretrained(d.base_model, subfolder=d.vae_subfolder, revision=d.base_revision, **kwargs)
        vit = load_vit(d.vit_model, d.vit_revision, d.vit_class, **kwargs)
        hidden = getattr(getattr(vit, "config", None), "hidden_size", None)
        if hidden is not None and hidden != d.vit_hidden_size:
            raise ValueError(f"ViT {d.vit_model} has hidden size {hidden}, config says {d.vit_hidden_size}")
        if unet.config.cross_attention_dim != d.guidance_dim:
            raise ValueError(f"UNet cross-attention width {unet.config.cross_attention_dim} "
                             f"!= guidance_dim {d.guidance_dim}")
        self.attach_base(unet.eval().requires_grad_(False), vae.eval().requires_grad_(False), vit)

    def attach_base(self, unet: nn.Module, vae: nn.Module, vit: nn.Module) -> None:
        self.__dict__["unet"], self.__dict__["vae"], self.__dict__["vit"] = unet, vae, vit

    def add_lora(self) -> None:
        """Attach trainable LoRA adapters (peft) to the UNet's configured target layers."""
        from peft import LoraConfig

        d = self.dcfg
        self.unet.add_adapter(LoraConfig(r=d.lora_rank, lora_alpha=d.lora_alpha, target_modules=list(d.lora_targets),
                                         init_lora_weights="gaussian"))

    def lora_state_dict(self) -> dict[str, torch.Tensor]:
        if self.unet is not None and not self.lora_fused and getattr(self.unet, "peft_config", None):
            from peft import get_peft_model_state_dict

            return {k: v.detach().cpu() for k, v in get_peft_model_state_dict(self.unet).items()}
        return dict(self._lora_state)

    def load_lora(self, state: dict[str, torch.Tensor], fuse: bool) -> None:
        from peft import set_peft_model_state_dict

        if not getattr(self.unet, "peft_config", None):
            self.add_lora()
        result = set_peft_model_state_dict(self.unet, state)
        unexpected = getattr(result, "unexpected_keys", None)
        if unexpected:
            raise ValueError(f"LoRA weights do not fit the UNet: {unexpected[:3]}")
        self._lora_state = {k: v.detach().cpu() for k, v in state.items()}
        if fuse:
            self.unet.fuse_lora()
            self.unet.unload_lora()
            self.lora_fused = True

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        state = dict(self.state_dict())
        state.update({LORA_PREFIX + k: v for k, v in self.lora_state_dict().items()})
        return state

    def load_trainable(self, state: dict[str, torch.Tensor], fuse: bool = False) -> None:
        own = {k: v for k, v in state.items() if not k.startswith(LORA_PREFIX)}
        missing, unexpected = self.load_state_dict(own, strict=False)
        if missing or unexpected:
            raise ValueError(f"diffusion weights do not match: missing {missing[:3]}, unexpected {unexpected[:3]}")
        lora = {k[len(LORA_PREFIX):]: v for k, v in state.items() if k.startswith(LORA_PREFIX)}
        if lora and self.unet is not None:
            self.load_lora(lora, fuse=fuse)

    def load_pretrained(self, state: dict[str, torch.Tensor], fuse: bool = True, **base_kwargs: Any) -> None:
        """Base weights from their repos, then our weights; LoRA fused for inference, or kept as
        trainable adapters (fuse=False; added fresh when the weights hold none yet)."""
        self.load_base(**base_kwargs)
        self.load_trainable(state, fuse=fuse)
        if not fuse and not getattr(self.unet, "peft_config", None):
            self.add_lora()

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> DiffusionDecoder:  # keep base nets with us
        super()._apply(fn, *args, **kwargs)
        for name in ("unet", "vae", "vit", "tiny_vae"):
            mod = self.__dict__.get(name)
            if mod is not None:
                mod._apply(fn, *args, **kwargs)
        return self

    def set_draft_vae(self, tiny_vae: nn.Module | None) -> None:
        """An optional AutoencoderTiny (TAESD layout) used by `draft=True` decodes."""
        self.__dict__["tiny_vae"] = tiny_vae

    # ---- the one step -----------------------------------------------------------------------
    def guidance_tokens(self, x_f: torch.Tensor, strength: float) -> torch.Tensor:
        d = self.dcfg
        null = self.null_tokens[None].expand(x_f.shape[0], -1, -1)
        if strength == 0.0:
            return null
        px = F.interpolate(x_f.clamp(0, 1), size=(d.vit_image_size, d.vit_image_size), mode="bicubic",
                           align_corners=False)
        mean = torch.tensor(d.vit_mean, device=px.device, dtype=px.dtype)[None, :, None, None]
        std = torch.tensor(d.vit_std, device=px.device, dtype=px.dtype)[None, :, None, None]
        tokens = self.vit(pixel_values=((px - mean) / std).to(self.vit.dtype)).last_hidden_state
        c_g = self.guidance_projection(tokens.to(self.null_tokens.dtype))
        return null + strength * (c_g - null)

    def latent(self, y_hat: torch.Tensor, z_hat: torch.Tensor) -> torch.Tensor:
        """y_t: the SD latent that T_s makes from the codec latents."""
        return self.transform(y_hat, self.side_synthesis(z_hat))

    def denoise(self, y_t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        d = self.dcfg
        t = torch.full((y_t.shape[0],), d.timestep, device=y_t.device, dtype=torch.long)
        out = self.unet(y_t.to(self.unet.dtype), t, encoder_hidden_states=cond.to(self.unet.dtype)).sample.to(y_t.dtype)
        if d.prediction_type == "v_prediction":
            return self.sqrt_abar * y_t - self.sqrt_one_minus_abar * out
        return (y_t - self.sqrt_one_minus_abar * out) / self.sqrt_abar

    def decode_latent(self, y0: torch.Tensor, draft: bool = False) -> torch.Tensor:
        """D_m (or the tiny draft VAE): SD latent -> image in [0, 1]."""
        if draft:
            if self.tiny_vae is None:
                raise ValueError("no draft VAE attached (set_draft_vae)")
            img = self.tiny_vae.decode(y0.to(self.tiny_vae.dtype)).sample
        else:
            img = self.vae.decode((y0 / self.dcfg.vae_scaling_factor).to(self.vae.dtype)).sample
        return ((img.float() + 1.0) * 0.5).clamp(0, 1)

    def forward(self, y_hat: torch.Tensor, z_hat: torch.Tensor, x_f: torch.Tensor, strength: float = 1.0,
                draft: bool = False) -> torch.Tensor:
        if self.unet is None:
            raise RuntimeError("diffusion base weights are not loaded")
        y0 = self.denoise(self.latent(y_hat, z_hat), self.guidance_tokens(x_f, strength))
        return self.decode_latent(y0, draft=draft)
