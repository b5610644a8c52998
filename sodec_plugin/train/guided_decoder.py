"""Decoder-only training of a guided fidelity decoder (models/fidelity.py): one set of weights from
the picture closest to the original (guidance 1) to the one that looks best to the perceptual
metrics (guidance 0), for the files a released model already writes.

The compression module is frozen, so the latents of the training crops are computed once, by the
codec itself (compress, then read back: the exact y_hat a decoder receives), and cached; each step
then runs the decoder alone. The loss of an image decoded at guidance t mixes, in dB-like units,
  t * 10 log10(MSE) + (1 - t) * (A * (100 - SSIMULACRA2) + B * (10 - CVVDP JOD) + C * 10 log10(MSE)),
A and B putting a metric's usual change per dB of PSNR on one scale and C keeping the colours of
the photo at the perceptual end (Agustsson et al., 2023, mix their realism loss the same way).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from ..config import SODECConfig
from ..models.sodec import SODECModel
from .data import CropDataset
from .perceptual import SSIMULACRA2_PER_DB
from .recipe import DECODER_STAGE, TrainRecipe
from .warm_start import warm_start

# dB-like weights of the perceptual end (see the module docstring): on the rate-distortion curves of
# the bundled model, one dB of PSNR is worth about 0.35 JOD (and perceptual.SSIMULACRA2_PER_DB points).
JOD_PER_DB = 0.35
MSE_ANCHOR = 0.1


def cache_latents(model: SODECModel, data: CropDataset, *, count: int, seed: int, max_quality: int = 100
                  ) -> dict[str, torch.Tensor]:
    """`count` crops coded by the codec at random qualities (uniform over 1..max_quality): the crops
    (uint8), the quality, the y_hat the decoder receives (float16) and the bits per pixel."""
    from PIL import Image

    from .. import codec, container

    rng = np.random.default_rng(seed)
    crops, qualities, latents, bpp = [], [], [], []
    for _ in range(count):
        _, x = data.sample(rng)
        arr = (x * 255.0 + 0.5).clamp(0, 255).to(torch.uint8)
        quality = int(rng.integers(1, max_quality + 1))
        # resampling=1: the decoder learns on the latents of the crop itself, at its size.
        data_bytes = codec.compress(Image.fromarray(arr.permute(1, 2, 0).numpy()), model=model, quality=quality,
                                    resampling=1)
        y_hat, _ = codec.decode_latents(container.parse(data_bytes), model)
        crops.append(arr)
        qualities.append(quality)
        latents.append(y_hat[0].to(torch.float16))
        bpp.append(8.0 * len(data_bytes) / (x.shape[1] * x.shape[2]))
    return {"x": torch.stack(crops), "quality": torch.tensor(qualities), "y_hat": torch.stack(latents),
            "bpp": torch.tensor(bpp)}


def sample_guidance(rng: np.random.Generator, n: int) -> torch.Tensor:
    """A quarter of the images at each end, the rest uniform in between."""
    u = rng.random(n)
    t = np.where(u < 0.25, 0.0, np.where(u < 0.5, 1.0, rng.random(n)))
    return torch.from_numpy(t).float()


class GuidedLoss:
    """The mixed loss of the module docstring, per image, with the metrics' values for the log."""

    def __init__(self) -> None:
        import pycvvdp

        from ..metrics import CVVDP_DISPLAY
        from .perceptual import ssimulacra2_torch

        self.cvvdp = pycvvdp.cvvdp(display_name=CVVDP_DISPLAY, quiet=True, device=torch.device("cpu"))
        self.ssimulacra2 = ssimulacra2_torch

    def __call__(self, x_hat: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        mse = (x_hat - x).pow(2).flatten(1).mean(1)
        db = 10.0 * torch.log10(mse.clamp(min=1e-10))
        loss = t * db
        values = {"psnr": float(-db.detach().mean())}
        p = t < 1
        if p.any():
            xp, rp = x_hat[p].clamp(0, 1), x[p]
            s2 = self.ssimulacra2(xp, rp)
            jod = 10.0 - self.cvvdp.loss(xp.unsqueeze(2), rp.unsqueeze(2), dim_order="BCFHW")
            perceptual = (100.0 - s2) / SSIMULACRA2_PER_DB + (10.0 - jod) / JOD_PER_DB + MSE_ANCHOR * db[p]
            loss = loss.clone()
            loss[p] = loss[p] + (1 - t[p]) * perceptual
            values |= {"ssimulacra2": float(s2.detach().mean()), "jod": float(jod.detach().mean())}
        return loss.mean(), values


def train(model: SODECModel, cache: dict[str, torch.Tensor], out: Path, *, steps: int, batch: int, lr: float,
          modulation_lr: float, seed: int, log_every: int = 10, save_every: int = 50) -> int:
    """Fine-tune model.fidelity_decoder on the cached latents to step `steps`; checkpoints (decoder,
    optimiser, step) go to out/decoder.pt every `save_every` steps and a run resumes from there.
    Returns the step reached."""
    dec = model.fidelity_decoder
    dec.train().requires_grad_(lr > 0)  # lr 0: the decoder's own weights stay those of its parent
    dec.modulation.requires_grad_(True)
    mod_params = list(dec.modulation.parameters())
    ids = {id(p) for p in mod_params}
    groups = [{"params": mod_params, "lr": modulation_lr}]
    if lr > 0:
        groups.append({"params": [p for p in dec.parameters() if id(p) not in ids], "lr": lr})
    opt = torch.optim.Adam(groups)
    ckpt, start = out / "decoder.pt", 0
    if ckpt.is_file():
        state = torch.load(ckpt, weights_only=True)
        dec.load_state_dict(state["decoder"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["step"])
    loss_fn = GuidedLoss()
    n = cache["x"].shape[0]
    t0 = time.time()
    with (out / "log.jsonl").open("a") as log:
        for step in range(start, steps):
            rng = np.random.default_rng([seed, step])
            idx = torch.from_numpy(rng.choice(n, size=batch, replace=False))
            x = cache["x"][idx].float() / 255.0
            y_hat = cache["y_hat"][idx].float()
            t = sample_guidance(rng, batch)
            loss, values = loss_fn(dec(y_hat, t), x, t)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if (step + 1) % log_every == 0:
                log.write(json.dumps({"step": step + 1, "loss": float(loss.detach()), **values,
                                      "seconds": round(time.time() - t0, 1)}) + "\n")
                log.flush()
            if (step + 1) % save_every == 0 or step + 1 == steps:
                tmp = ckpt.with_suffix(".tmp")
                torch.save({"decoder": dec.state_dict(), "optimizer": opt.state_dict(), "step": step + 1}, tmp)
                tmp.replace(ckpt)
    dec.eval().requires_grad_(False)
    return max(start, steps)


def latent_cache(src: SODECModel, recipe: TrainRecipe, data: str | Path, out: Path) -> dict[str, torch.Tensor]:
    """The coded crops of the recipe (latent_crops: per subfolder of `data` in name order, or one count
    for the whole folder), made once and kept in out/latents.pt for resumed runs."""
    cache_file = out / "latents.pt"
    if cache_file.is_file():
        return torch.load(cache_file, weights_only=True)
    counts = recipe.latent_crops
    folders = [Path(data)] if len(counts) == 1 else sorted(p for p in Path(data).iterdir() if p.is_dir())
    if len(folders) != len(counts):
        raise ValueError(f"latent_crops {counts} names {len(counts)} folders; {data} has {len(folders)} subfolders")
    t0 = time.time()
    parts = []
    for i, (folder, count) in enumerate(zip(folders, counts, strict=True)):
        crops = CropDataset(folder, recipe.decoder.crop, downscale=recipe.downscale,
                            random_downscale=recipe.random_downscale)
        parts.append(cache_latents(src, crops, count=count, seed=recipe.seed + i))
    cache = {k: torch.cat([part[k] for part in parts]) for k in parts[0]}
    tmp = cache_file.with_suffix(".tmp")
    torch.save(cache, tmp)
    tmp.replace(cache_file)
    print(f"coded {sum(counts)} crops in {time.time() - t0:.0f} s, {float(cache['bpp'].mean()):.3f} bpp on average",
          flush=True)
    return cache


def run(cfg: SODECConfig, recipe: TrainRecipe, data: str | Path, out: str | Path, init_from: str | Path,
        max_steps: int | None = None, command: str = "") -> Path:
    """`sodec train --stage decoder`: `init_from`'s model with cfg's guided decoder (warm_start), trained
    on its cached latents to the recipe's steps (or `max_steps`), exported to out/model-decoder (and
    out/model when the recipe's steps are done)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not cfg.guidance_channels:
        raise ValueError(f"config {cfg.name!r} has no guidance_channels: the decoder stage trains a guided decoder")
    src = SODECModel.from_folder(init_from)
    model = warm_start(src, cfg)
    cache = latent_cache(src, recipe, data, out)
    sr = recipe.decoder
    steps = sr.steps if max_steps is None else min(max_steps, sr.steps)
    done = train(model, cache, out, steps=steps, batch=sr.batch_size, lr=sr.lr, modulation_lr=recipe.modulation_lr,
                 seed=recipe.seed, log_every=recipe.log_every, save_every=recipe.checkpoint_every)
    model.eval().requires_grad_(False)
    meta = {"training": {"command": command, "stage": DECODER_STAGE, "steps": done, "recipe": recipe.to_dict(),
                         "init_from": src.identity, "loss": {"ssimulacra2_per_db": SSIMULACRA2_PER_DB,
                                                             "jod_per_db": JOD_PER_DB, "mse_anchor": MSE_ANCHOR}}}
    folder = model.save_pretrained(out / f"model-{DECODER_STAGE}", metadata=meta)
    if done >= sr.steps:
        model.save_pretrained(out / "model", metadata=meta)
    return folder
