"""How much rate a richer entropy model would save with the transforms frozen (a research probe).

Caches the analysis latents y of a model on a training folder and on test sets, then trains only the
entropy side (H_a, the prior, the hyper entropy bottleneck, the hyper gains and the context
networks) for the rate alone, in float, and prints each test set's estimated rate change per rate
point against the model as it is. The distortion is the model's own (the decoder and the y gains
are frozen), so a rate change is a BD-rate change on PSNR and MS-SSIM alike. Variants:

- `base`: the model's own checkerboard context, trained further (the control);
- `g3`: anchors of all channels, then the non-anchors of the first `--split` channels, then the
  rest, each later group conditioned on every symbol decoded before it (starts as `base`);
- `g4`: two channel slices, each coded as anchors then non-anchors (ELIC-like channel context).

It is float only: a variant worth having needs an exact fixed-point path in `latent_codec` and
`context` and a new decoder path before any file could use it.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import device_line  # noqa: E402

import sodec_plugin  # noqa: E402
from sodec_plugin.codec import encoder_input  # noqa: E402
from sodec_plugin.models.compression import _ste_round  # noqa: E402
from sodec_plugin.models.context import CheckerboardContext, anchor_mask  # noqa: E402
from sodec_plugin.train.data import CropDataset  # noqa: E402


def cached_latents(model: nn.Module, folder: Path, downscale: float, cache: Path) -> list[torch.Tensor]:
    """y of every image, loaded as the trainer loads it (CropDataset: downscaled by `downscale`, never
    below 256 px), cached on disk per model and folder."""
    path = cache / f"{getattr(model, 'digest', '')[:8] or 'model'}-{folder.name}-{downscale}.pt"
    if path.exists():
        return torch.load(path)
    ys = []
    for img in CropDataset(folder, crop=256, downscale=downscale).images:
        x = encoder_input(Image.fromarray(img.permute(1, 2, 0).numpy()), 64)
        with torch.no_grad():
            ys.append(model.compression.analysis.forward_banded(x)[0].clone())
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(ys, path)
    return ys


def group_context(cm: nn.Module, start: CheckerboardContext | None = None,
                  inputs: torch.Tensor | None = None) -> CheckerboardContext:
    """A context network for one coding group: the checkerboard context's layers with every tap
    open, since its input is masked to the symbols decoded so far instead. From `start`, it begins
    as that context (seeing only its taps, and only the `inputs` channels); else its head is zero."""
    cfg = cm.cfg
    net = CheckerboardContext(cfg.latent_channels, context_channels=cfg.context_channels,
                              weight_bits=cfg.prior_weight_bits, activation_bits=cfg.prior_activation_bits,
                              output_bits=cfg.prior_output_bits)
    if start is not None:
        net.load_state_dict(copy.deepcopy(start.state_dict()))
        with torch.no_grad():
            net.context.weight.mul_(start.tap_mask)
            if inputs is not None:
                net.context.weight.mul_(inputs.float()[None, :, None, None])
    net.tap_mask.fill_(1.0)
    return net


class EntropySide(nn.Module):
    """The trainable entropy side of one variant; `bits(y, rate_index)` is its rate per image."""

    def __init__(self, model: nn.Module, variant: str, split: int) -> None:
        super().__init__()
        cm = model.compression
        self.cm, self.variant = cm, variant
        m = cm.cfg.latent_channels
        every = torch.ones(m, dtype=torch.bool)
        first = torch.arange(m) < split
        self.hyper_analysis = copy.deepcopy(cm.hyper_analysis)
        self.prior = copy.deepcopy(cm.prior)
        self.entropy_bottleneck = copy.deepcopy(cm.entropy_bottleneck)
        self.z_gain = nn.Parameter(cm.z_gain.detach().clone())
        # groups: (channels, anchors?) in coding order; nets[k - 1] serves group k
        if variant == "base":
            self.groups = [(every, True), (every, False)]
            self.nets = nn.ModuleList([copy.deepcopy(cm.context)])
        elif variant == "g3":
            self.groups = [(every, True), (first, False), (~first, False)]
            self.nets = nn.ModuleList([group_context(cm, cm.context), group_context(cm, cm.context)])
        elif variant == "g4":
            self.groups = [(first, True), (first, False), (~first, True), (~first, False)]
            self.nets = nn.ModuleList([group_context(cm, cm.context, inputs=first), group_context(cm),
                                       group_context(cm, cm.context)])
        else:
            raise ValueError(f"unknown variant {variant!r}")

    def bits(self, y: torch.Tensor, rate_index: torch.Tensor, noise: bool) -> torch.Tensor:
        cm, cfg = self.cm, self.cm.cfg
        g = cm.gain.abs()[rate_index][:, :, None, None]
        zg = self.z_gain.abs()[rate_index][:, :, None, None]
        z_tilde, z_lik = self.entropy_bottleneck(self.hyper_analysis(y) * zg, training=noise)
        means, scales = self.prior(z_tilde / zg)
        yg, mg, clamped = y * g, means * g, scales.clamp(min=cfg.scale_min) * g
        sg = scales * g if self.variant == "base" else clamped  # base: exactly the model's training forward
        anchors = anchor_mask(*y.shape[-2:], device=y.device)
        decoded = torch.zeros(y.shape[1:], dtype=torch.bool)
        symbols = _ste_round(yg - mg)
        for k, (channels, anchor_pass) in enumerate(self.groups):
            here = channels[:, None, None] & (anchors if anchor_pass else ~anchors)[None]
            if k:
                if self.variant == "base":
                    dm, ds = self.nets[0](symbols * anchors, clamped)
                else:
                    dm, ds = self.nets[k - 1](symbols * decoded, sg)
                mg, sg = torch.where(here, mg + dm, mg), torch.where(here, sg + ds, sg)
                symbols = torch.where(here, _ste_round(yg - mg), symbols)  # as the coder: from refined means
            decoded = decoded | here
        _, y_lik = cm.gaussian(yg, sg, means=mg, training=noise)
        return -(torch.log2(y_lik).sum(dim=(1, 2, 3)) + torch.log2(z_lik).sum(dim=(1, 2, 3)))


@torch.no_grad()
def rates(side: EntropySide, ys: list[torch.Tensor]) -> list[float]:
    """Estimated bits per pixel at every rate point, rounded latents, over a whole test set."""
    pixels = sum(y.shape[-1] * y.shape[-2] * 256 for y in ys)
    return [sum(float(side.bits(y[None], torch.tensor([r]), False)) for y in ys) / pixels
            for r in range(side.cm.cfg.num_rates)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("variant", choices=("base", "g3", "g4"))
    p.add_argument("--model", default=None, help="model folder or name (default: the bundled default)")
    p.add_argument("--train", type=Path, required=True, help="training folder (downscaled 0.75, as the trainer)")
    p.add_argument("--test", type=Path, nargs="+", required=True, help="test folders (never trained on)")
    p.add_argument("--cache", type=Path, default=Path("runs/entropy-probe"), help="where the latents are cached")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=16, help="latent cells (16: 256 px crops)")
    p.add_argument("--split", type=int, default=64, help="channels of the first slice (g3, g4)")
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--loss", choices=("bpp", "relative"), default="bpp",
                   help="bpp: the mean rate (dominated by the high rate points); relative: each crop's bits over "
                        "the model's own bits for it, so that every rate point weighs the same")
    a = p.parse_args()
    torch.manual_seed(a.seed)
    model = sodec_plugin.load_model(a.model)
    for q in model.parameters():
        q.requires_grad_(False)
    train = cached_latents(model, a.train, 0.75, a.cache)
    tests = {d.name: cached_latents(model, d, 1.0, a.cache) for d in a.test}
    side = EntropySide(model, a.variant, a.split)
    trained = [q for n, q in side.named_parameters() if not n.startswith("cm.") and not n.endswith("quantiles")]
    for q in trained:
        q.requires_grad_(True)
    quantiles = side.entropy_bottleneck.quantiles
    quantiles.requires_grad_(True)
    opt = torch.optim.Adam(trained, lr=a.lr)
    aux_opt = torch.optim.Adam([quantiles], lr=1e-3)
    as_is = EntropySide(model, "base", a.split)  # the model as it is: every variant is measured against it
    start = {name: rates(as_is, ys) for name, ys in tests.items()}
    rng = np.random.default_rng(a.seed)
    t0 = time.time()
    print(device_line("cpu"))
    print("python " + " ".join(sys.argv) + "\n")
    print("| step | set | mean rate change | per rate point (%) |\n|---|---|---|---|")
    for step in range(1, a.steps + 1):
        crops = []
        for _ in range(a.batch):
            y = train[int(rng.integers(len(train)))]
            top, left = (int(rng.integers(n - a.crop + 1)) for n in y.shape[-2:])
            crops.append(y[:, top:top + a.crop, left:left + a.crop])
        r = torch.from_numpy(rng.integers(side.cm.cfg.num_rates, size=a.batch))
        y = torch.stack(crops)
        if a.loss == "relative":
            with torch.no_grad():
                own = as_is.bits(y, r, True)
            loss = (side.bits(y, r, True) / own).mean()
        else:
            loss = side.bits(y, r, True).sum() / (a.batch * (16 * a.crop) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        aux = side.entropy_bottleneck.loss()
        aux_opt.zero_grad()
        aux.backward()
        aux_opt.step()
        if step % a.eval_every == 0 or step == a.steps:
            for name, ys in tests.items():
                d = [100 * (n / o - 1) for n, o in zip(rates(side, ys), start[name], strict=True)]
                print(f"| {step} | {name} | {np.mean(d):+.2f}% | {' '.join(f'{x:+.2f}' for x in d)} |", flush=True)
    print(f"\n{a.variant}, {a.loss} loss, {a.steps} steps, lr {a.lr}, batch {a.batch}, {time.time() - t0:.0f} s, "
          f"{torch.get_num_threads()} torch threads")


if __name__ == "__main__":
    main()
