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

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..models.sodec import SODECModel
from .data import CropDataset

# dB-like weights of the perceptual end (see the module docstring): on the rate-distortion curves of
# the bundled model, one dB of PSNR is worth about 6 SSIMULACRA2 points and 0.35 JOD.
SSIMULACRA2_PER_DB = 6.0
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
        data_bytes = codec.compress(Image.fromarray(arr.permute(1, 2, 0).numpy()), model=model, quality=quality)
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
            values |= {"ssimulacra2": float(s2.mean()), "jod": float(jod.mean())}
        return loss.mean(), values


def train(model: SODECModel, cache: dict[str, torch.Tensor], out: Path, *, steps: int, batch: int, lr: float,
          modulation_lr: float, seed: int, log_every: int = 10, save_every: int = 50) -> None:
    """Fine-tune model.fidelity_decoder on the cached latents; checkpoints (decoder, optimiser,
    step) go to out/decoder.pt every `save_every` steps and a run resumes from there."""
    dec = model.fidelity_decoder
    dec.train().requires_grad_(True)
    mod_params = list(dec.modulation.parameters())
    ids = {id(p) for p in mod_params}
    base = [p for p in dec.parameters() if id(p) not in ids]
    opt = torch.optim.Adam([{"params": base, "lr": lr}, {"params": mod_params, "lr": modulation_lr}])
    ckpt, start = out / "decoder.pt", 0
    if ckpt.is_file():
        state = torch.load(ckpt, weights_only=True)
        dec.load_state_dict(state["decoder"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["step"])
    loss_fn = GuidedLoss()
    n = cache["x"].shape[0]
    log = (out / "log.jsonl").open("a")
    t0 = time.time()
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
            log.write(json.dumps({"step": step + 1, "loss": float(loss), **values,
                                  "seconds": round(time.time() - t0, 1)}) + "\n")
            log.flush()
        if (step + 1) % save_every == 0 or step + 1 == steps:
            tmp = ckpt.with_suffix(".tmp")
            torch.save({"decoder": dec.state_dict(), "optimizer": opt.state_dict(), "step": step + 1}, tmp)
            tmp.replace(ckpt)
    dec.eval().requires_grad_(False)


def main(argv: list[str] | None = None) -> None:
    from .trainer import warm_start

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--init-from", required=True, help="the released model whose decoder is fine-tuned")
    ap.add_argument("--data", required=True, nargs="+", help="training folders")
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", required=True, help="the new model's name")
    ap.add_argument("--guidance-channels", type=int, default=64)
    ap.add_argument("--crops", type=int, nargs="+", default=[3000], help="crops from each folder")
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--random-downscale", type=float, default=0.35)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--modulation-lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-only", action="store_true", help="only code the crops and cache their latents")
    ap.add_argument("--export", action="store_true", help="only write the model folder from the last checkpoint")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    src = SODECModel.from_folder(a.init_from)
    cfg = dataclasses.replace(src.cfg, name=a.name, guidance_channels=a.guidance_channels)
    model = warm_start(src, cfg)
    cache_file = out / "latents.pt"
    if not a.export:
        if cache_file.is_file():
            cache = torch.load(cache_file, weights_only=True)
        else:
            if len(a.crops) != len(a.data):
                raise SystemExit("give --crops once per --data folder")
            t0 = time.time()
            parts = []
            for i, (folder, count) in enumerate(zip(a.data, a.crops, strict=True)):
                data = CropDataset(folder, a.crop, random_downscale=a.random_downscale)
                parts.append(cache_latents(src, data, count=count, seed=a.seed + i))
            cache = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
            torch.save(cache, cache_file)
            print(f"cached {sum(a.crops)} crops in {time.time() - t0:.0f} s, mean {float(cache['bpp'].mean()):.3f} "
                  "bpp", flush=True)
        if a.cache_only:
            return
        train(model, cache, out, steps=a.steps, batch=a.batch, lr=a.lr, modulation_lr=a.modulation_lr, seed=a.seed)
    else:
        state = torch.load(out / "decoder.pt", weights_only=True)
        model.fidelity_decoder.load_state_dict(state["decoder"])
    recipe: dict[str, Any] = {k: getattr(a, k) for k in ("guidance_channels", "crops", "crop", "random_downscale",
                                                         "steps", "batch", "lr", "modulation_lr", "seed")}
    recipe |= {"ssimulacra2_per_db": SSIMULACRA2_PER_DB, "jod_per_db": JOD_PER_DB, "mse_anchor": MSE_ANCHOR,
               "ms_ssim_weight": model.ms_ssim_weight}
    model.eval().requires_grad_(False)
    model.save_pretrained(out / "model", metadata={"training": {"recipe": recipe, "init_from": src.identity,
                                                                 "stage": "guided decoder"}})
    print(f"saved {out / 'model'} ({model.identity})", flush=True)


if __name__ == "__main__":
    main()
