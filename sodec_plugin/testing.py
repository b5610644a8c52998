"""Tiny random models of the full architecture, in the exact on-disk layouts that load_model reads.

For tests and for checking the plumbing without real weights: the images they decode are noise.
`save_tiny_model` writes a SODEC model folder; with `diffusion=True` it also writes the tiny SD
base (UNet with SD 2 structural flags + AutoencoderKL) and the tiny ViT, either into a Hugging
Face Hub cache (`hub_cache`, the layout huggingface_hub creates: models--org--name/blobs,
snapshots/<commit>, refs/main) under the repo ids named in the tiny config, or into local folders
next to the model, with the config pointing at them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import torch

from .config import SODECConfig, builtin_configs
from .models.sodec import SODECModel


def tiny_unet(cfg: SODECConfig) -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    d = cfg.diffusion
    assert d is not None
    return UNet2DConditionModel(
        sample_size=8, in_channels=d.sd_latent_channels, out_channels=d.sd_latent_channels,
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=d.guidance_dim, attention_head_dim=(2, 4), use_linear_projection=True,
        upcast_attention=False,
    )


def tiny_vae(cfg: SODECConfig) -> torch.nn.Module:
    from diffusers import AutoencoderKL

    d = cfg.diffusion
    assert d is not None
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=d.sd_latent_channels, norm_num_groups=4,
        block_out_channels=(4, 4, 8, 8), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        scaling_factor=d.vae_scaling_factor,
    )


def tiny_vit(cfg: SODECConfig) -> torch.nn.Module:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    d = cfg.diffusion
    assert d is not None
    return CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=d.vit_hidden_size, intermediate_size=2 * d.vit_hidden_size, num_hidden_layers=1,
        num_attention_heads=2, image_size=d.vit_image_size, patch_size=8, projection_dim=d.vit_hidden_size))


def _git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def place_in_hub_cache(folder: str | Path, repo_id: str, cache_dir: str | Path, revision: str = "main") -> Path:
    """Copy a repo folder into a Hub cache the way huggingface_hub lays out a download; returns
    the snapshot folder. Large files are keyed by sha256 (LFS) and small ones by git blob sha1."""
    folder, cache_dir = Path(folder), Path(cache_dir)
    repo = cache_dir / ("models--" + repo_id.replace("/", "--"))
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    h = hashlib.sha1()
    for p in files:
        h.update(str(p.relative_to(folder)).encode() + hashlib.sha256(p.read_bytes()).digest())
    commit = h.hexdigest()
    snap = repo / "snapshots" / commit
    for p in files:
        data = p.read_bytes()
        key = hashlib.sha256(data).hexdigest() if p.suffix in (".safetensors", ".bin") else _git_blob_sha(data)
        blob = repo / "blobs" / key
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            blob.write_bytes(data)
        link = snap / p.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.exists() or link.is_symlink():
            link.unlink()
        os.symlink(os.path.relpath(blob, link.parent), link)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    return snap


def save_tiny_base(cfg: SODECConfig, folder: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """Write the tiny SD base (diffusers repo layout) and tiny ViT; returns their folders."""
    torch.manual_seed(seed)
    folder = Path(folder)
    sd, vit = folder / "tiny-sd", folder / "tiny-vit"
    tiny_unet(cfg).save_pretrained(sd / "unet")
    tiny_vae(cfg).save_pretrained(sd / "vae")
    (sd / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1"}\n')
    tiny_vit(cfg).save_pretrained(vit)
    return sd, vit


def save_tiny_model(path: str | Path, *, diffusion: bool = True, hub_cache: str | Path | None = None,
                    seed: int = 0, context: bool = False) -> Path:
    """A tiny random SODEC model at `path` (config.json + model.safetensors).

    diffusion=False gives a fidelity-only model; context=True adds a checkerboard context model
    (with a random, not an identity, head so that it changes what is coded). With diffusion=True the base weights go to
    `hub_cache` under the config's repo ids (load with HF_HUB_OFFLINE=1 and HF_HUB_CACHE set to
    it), or, without a cache, to `path/base/` with the config naming those local folders.
    """
    path = Path(path)
    cfg = builtin_configs()["tiny"]
    if not diffusion:
        cfg = dataclasses.replace(cfg, diffusion=None, name="tiny-fidelity")
    if context:
        cfg = dataclasses.replace(cfg, context_model="checkerboard", context_channels=4, name=cfg.name + "-context")
    torch.manual_seed(seed)
    model = SODECModel(cfg)
    with torch.no_grad():  # large gains so that random latents give non-trivial streams
        model.compression.gain.mul_(30.0)
        model.compression.inverse_gain.div_(30.0)
        if context:
            torch.nn.init.normal_(model.compression.context.head.weight, std=0.1)
    if cfg.diffusion is not None:
        with tempfile.TemporaryDirectory() as tmp:
            sd, vit = save_tiny_base(cfg, tmp, seed)
            if hub_cache is not None:
                place_in_hub_cache(sd, cfg.diffusion.base_model, hub_cache)
                place_in_hub_cache(vit, cfg.diffusion.vit_model, hub_cache)
            else:
                base = path / "base"
                if base.exists():
                    shutil.rmtree(base)
                shutil.copytree(tmp, base)
                cfg = dataclasses.replace(cfg, diffusion=dataclasses.replace(
                    cfg.diffusion, base_model=str((base / "tiny-sd").resolve()),
                    vit_model=str((base / "tiny-vit").resolve())))
                model.cfg = cfg
                model.compression.cfg = cfg
            model.diffusion.attach_base(tiny_unet(cfg), tiny_vae(cfg), tiny_vit(cfg))
            model.diffusion.add_lora()
    model.save_pretrained(path, metadata={"training": {"note": "tiny random model for tests; decodes noise"}})
    return path
