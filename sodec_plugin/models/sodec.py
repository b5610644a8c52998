"""SODEC: the compression module, the fidelity decoder and (optionally) the one-step diffusion
decoder, with diffusers-style ``from_pretrained`` / ``save_pretrained``.

A saved model is a folder: ``config.json`` (the SODECConfig plus the sha256 of the weights) and
``model.safetensors`` (every trained tensor; LoRA unfused). The frozen parts (SD UNet and VAE,
the ViT) are not copied: they come from their own repo ids and revisions named in the config.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import CONFIG_NAME, WEIGHTS_NAME, SODECConfig
from .compression import CompressionModule
from .fidelity import FidelityDecoder
from .objective import DEFAULT_MS_SSIM_WEIGHT, recorded_ms_ssim_weight


class WeightsError(ValueError):
    """Weights that do not match their config (digest, keys or shapes)."""


# State-dict keys of the diffusion path start with this; its base weights are not ours to save.
DIFFUSION_PREFIX = "diffusion."


def split_state(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(the tensors of everything but the diffusion path, the diffusion path's under its own keys)."""
    own = {k: v for k, v in state.items() if not k.startswith(DIFFUSION_PREFIX)}
    diffusion = {k[len(DIFFUSION_PREFIX):]: v for k, v in state.items() if k.startswith(DIFFUSION_PREFIX)}
    return own, diffusion


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class SODECModel(nn.Module):
    def __init__(self, cfg: SODECConfig, *, entropy_models: bool = True) -> None:
        """`entropy_models=False`: compressai's entropy models of training are built only when asked
        for (CompressionModule), for a model that codes."""
        super().__init__()
        self.cfg = cfg
        self.compression = CompressionModule(cfg, entropy_models=entropy_models)
        self.fidelity_decoder = FidelityDecoder(cfg.latent_channels, cfg.synthesis_channels, cfg.synthesis_blocks,
                                                cfg.synthesis_blocks_1_8, guidance_channels=cfg.guidance_channels)
        self.diffusion = None
        if cfg.diffusion is not None:
            from .diffusion import DiffusionDecoder

            self.diffusion = DiffusionDecoder(cfg)
        self.digest = ""  # sha256 of the weights file this instance was loaded from / saved to
        # The MS-SSIM weight of the loss it was trained with (from its weights' metadata), which the
        # encoder's latent search minimises too (models/objective.py).
        self.ms_ssim_weight = DEFAULT_MS_SSIM_WEIGHT

    @property
    def identity(self) -> str:
        return f"{self.cfg.name}@{self.digest[:8]}" if self.digest else self.cfg.name

    @property
    def has_diffusion(self) -> bool:
        return self.diffusion is not None

    @property
    def reads_guidance(self) -> bool:
        """Whether the guidance changes what this model decodes (a diffusion path, or a fidelity
        decoder conditioned on it); other models ignore it."""
        return self.has_diffusion or self.fidelity_decoder.reads_guidance

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Every tensor that belongs in model.safetensors (frozen base weights excluded)."""
        state, _ = split_state(self.state_dict())
        if self.diffusion is not None:
            state.update({DIFFUSION_PREFIX + k: v for k, v in self.diffusion.trainable_state_dict().items()})
        return {k: v.detach().contiguous().cpu() for k, v in state.items()}

    def save_pretrained(self, folder: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        """Write config.json + model.safetensors; returns the folder. Tables are refreshed first."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.compression.codec.update_tables()
        meta = {"format": "pt", "sodec_config": json.dumps(self.cfg.to_dict(), sort_keys=True)}
        for k, v in (metadata or {}).items():
            meta[k] = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
        tmp = folder / (WEIGHTS_NAME + ".tmp")
        save_file(self.trainable_state_dict(), str(tmp), metadata=meta)
        os.chmod(tmp, 0o644)  # safetensors writes 0600; a model folder is meant to be shared and read
        tmp.replace(folder / WEIGHTS_NAME)
        self.digest = file_sha256(folder / WEIGHTS_NAME)
        self.cfg.save(folder, weights_sha256=self.digest)
        return folder

    def push_to_hub(self, repo_id: str, *, private: bool = False, token: str | None = None,
                    metadata: dict[str, Any] | None = None) -> str:
        """save_pretrained() to a temporary folder and publish it (config, weights, model card)."""
        import tempfile

        from ..hub import push_to_hub
        from ..model_card import write_model_card

        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp, metadata=metadata)
            write_model_card(tmp, self, dict(metadata or {}))
            return push_to_hub(tmp, repo_id, private=private, token=token)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path | None = None, *, revision: str | None = None,
                        local_files_only: bool | None = None, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None, optimize: bool = True) -> SODECModel:
        """The diffusers way: a release name (None: the default), a local folder or a Hub repo id ->
        a new model of its own. hub.resolve_folder is the one path from a name to weights;
        sodec_plugin.load_model takes the same path and shares one instance per process."""
        from ..hub import resolve_folder

        folder = resolve_folder(name_or_path, revision=revision, local_files_only=local_files_only)
        base_kwargs = {} if local_files_only is None else {"local_files_only": local_files_only}
        return cls.from_folder(folder, device=device, dtype=dtype, base_kwargs=base_kwargs, optimize=optimize)

    @classmethod
    def from_folder(cls, folder: str | Path, *, device: str | torch.device | None = None,
                    dtype: torch.dtype | None = None, base_kwargs: dict[str, Any] | None = None,
                    fuse_lora: bool = True, optimize: bool = False) -> SODECModel:
        """Load a saved model from a local folder, refusing weights whose digest is wrong. `optimize`
        applies the exact inference reformulations of sodec_plugin.speed and builds compressai's
        entropy models of training only when asked for (for models that only decode and encode; the
        same files and, to rounding, the same pixels)."""
        from safetensors import safe_open

        folder = Path(folder)
        if not (folder / CONFIG_NAME).is_file():
            raise FileNotFoundError(f"{folder} holds no {CONFIG_NAME}")
        cfg, expected = SODECConfig.load(folder)
        weights = folder / WEIGHTS_NAME
        if not weights.is_file():
            raise FileNotFoundError(f"{folder} holds no {WEIGHTS_NAME}")
        digest = file_sha256(weights)
        if expected is not None and digest != expected:
            raise WeightsError(f"{weights} has sha256 {digest[:16]}..., but its config.json records "
                               f"{expected[:16]}...: the file is corrupt or does not belong to this config")
        with safe_open(str(weights), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
            training = json.loads((f.metadata() or {}).get("training", "{}"))
        model = cls(cfg, entropy_models=not optimize)
        own, lora = split_state(state)
        missing, unexpected = model.load_state_dict(own, strict=False)
        missing = [k for k in missing if not k.startswith(DIFFUSION_PREFIX)]
        if missing or unexpected:
            raise WeightsError(f"weights do not match config {cfg.name!r}: missing {missing[:5]}, "
                               f"unexpected {unexpected[:5]}")
        if model.diffusion is not None:
            model.diffusion.load_pretrained(lora, fuse=fuse_lora, **(base_kwargs or {}))
        model.digest = digest
        model.ms_ssim_weight = recorded_ms_ssim_weight(training)
        model.eval().requires_grad_(False)
        if device is not None or dtype is not None:
            model.to_runtime(device, dtype)
        if optimize:
            from ..speed import optimize_codec

            optimize_codec(model)
        return model

    def to_runtime(self, device: str | torch.device | None, dtype: torch.dtype | None) -> SODECModel:
        """Move networks to a device/dtype; the coding tables and exact prior stay on the CPU."""
        comp = self.compression
        keep = {"scale_table": comp.scale_table}
        self.to(device=device)
        if dtype is not None:
            for mod in (self.fidelity_decoder, comp.analysis, comp.hyper_analysis):
                mod.to(dtype=dtype)
            if self.diffusion is not None:
                self.diffusion.to(dtype=dtype)
        for name, buf in list(comp.named_buffers(recurse=False)):
            setattr(comp, name, buf.cpu())
        comp.scale_table = keep["scale_table"].cpu()
        return self

    @property
    def device(self) -> torch.device:
        return next(self.fidelity_decoder.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.fidelity_decoder.parameters()).dtype
