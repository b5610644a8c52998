"""The compression module's networks: analysis E, hyper analysis H_a, the prior P, the context
model and the rate gains, with the training forward.

Layered as in compressai: networks and their entropy models (EntropyBottleneck for z, a mean-scale
GaussianConditional for y) for the training likelihoods here; the coding side (integer tables,
exact gains, coding passes, quantisers) in `latent_codec`, reached as `CompressionModule.codec`.
One model covers every rate point with a gain vector per point (Cui et al., "Asymmetric gained
deep image compression", 2021): y is scaled by the gain before rounding, and the prior's means and
scales are scaled by the same exact gain. With `hyper_gain`, z is scaled too, and the prior reads
the symbols through an exact inverse gain.

Coding reads the integer tables, never the entropy models: a model loaded only to code
(`entropy_models=False`, as `SODECModel.from_folder(..., optimize=True)` loads one) holds their
tensors aside and builds compressai's modules from them the first time anything asks for them (the
encoder's latent search, new tables), so decoding never imports compressai's package.
"""

from __future__ import annotations

import threading
from typing import Any

import torch
from torch import nn

from ..config import SODECConfig
from ..entropy import compressai_module
from . import rows
from .blocks import identity_blocks
from .context import CheckerboardContext, anchor_mask
from .gdn import GDN
from .latent_codec import TABLE_BUFFERS, LatentCodec
from .prior import PriorSynthesis

CONTEXT_MODELS = ("none", "checkerboard")
# compressai's entropy models of training (likelihoods of z and y), by attribute name.
ENTROPY_MODELS = ("entropy_bottleneck", "gaussian")
_BUILD_LOCK = threading.Lock()


# Encoder bands: about this many input pixels each. The first three stages stream bands of rows
# (models/rows.py): nothing is computed twice, and their widest tensor (64 channels at half
# resolution, float32) stays under 32 MiB, which glibc's malloc reuses instead of mapping fresh pages.
ENCODE_BAND_PIXELS = 1 << 19
ENCODE_MIN_BAND = 64


def _down(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 5, stride=2, padding=2)


class Analysis(nn.Module):
    """E: image in [0, 1] -> latent y at 1/16 resolution (four stride-2 stages with GDN, then
    `blocks` residual blocks on the latent grid)."""

    def __init__(self, widths: tuple[int, int, int], latent: int, blocks: int = 0) -> None:
        super().__init__()
        c0, c1, c2 = widths
        self.net = nn.Sequential(_down(3, c0), GDN(c0), _down(c0, c1), GDN(c1),
                                 _down(c1, c2), GDN(c2), _down(c2, latent))
        self.blocks = identity_blocks(latent, blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x * 2.0 - 1.0)
        return y if self.blocks is None else self.blocks(y)

    def forward_banded(self, x: torch.Tensor, band: int | None = None) -> torch.Tensor:
        """forward() for inference on large images: the first three stages (their 1/2 and 1/4
        resolution features are the largest tensors an encode makes: 64 channels x H/2 x W/2) stream
        bands of `band` input rows (default: about ENCODE_BAND_PIXELS pixels, 8 rows of the 1/8 grid at
        least), each
        computed once, converting 8-bit pixels to floats band by band; the rest runs on the whole 1/8
        grid. The same values as forward(), bit for bit (each output's sum is the same)."""
        head, tail = self.net[:6], self.net[6:]
        p = self.net[0].weight
        height = x.shape[-2]
        band = band or max(ENCODE_MIN_BAND, ENCODE_BAND_PIXELS // x.shape[-1])
        chain = rows.stages(head) if band < height else None
        parts = []
        for top in range(0, height, band):
            t = x[..., top:top + band, :].to(p.device, p.dtype)
            if x.dtype == torch.uint8:  # 8-bit pixels become floats one band at a time
                t = t.div_(255.0)
            t = t * 2.0 - 1.0
            parts.append(head(t) if chain is None else rows.run(chain, t, last=top + band >= height))
        h = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)
        y = tail(h)
        return y if self.blocks is None else self.blocks(y)


class HyperAnalysis(nn.Module):
    """H_a: y -> z at 1/64 resolution."""

    def __init__(self, latent: int, hidden: int, z_channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(latent, hidden, 3, padding=1), nn.LeakyReLU(inplace=True),
                                 _down(hidden, hidden), nn.LeakyReLU(inplace=True), _down(hidden, z_channels))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.net(y)


class CompressionModule(nn.Module):
    """The networks and parameters of the compression side (E, H_a, P, the context model, the gains,
    the entropy models) with the training forward; `.codec` codes their latents at inference."""

    def __init__(self, cfg: SODECConfig, *, entropy_models: bool = True) -> None:
        super().__init__()
        if cfg.rate_substeps & (cfg.rate_substeps - 1):
            raise ValueError("rate_substeps must be a power of two (exact gain interpolation)")
        self.cfg = cfg
        m = cfg.latent_channels
        self.analysis = Analysis(cfg.analysis_channels, m, cfg.analysis_blocks)
        self.hyper_analysis = HyperAnalysis(m, cfg.hyper_channels, cfg.hyper_latent_channels)
        fixed_point = {"weight_bits": cfg.prior_weight_bits, "activation_bits": cfg.prior_activation_bits,
                       "output_bits": cfg.prior_output_bits}
        self.prior = PriorSynthesis(cfg.hyper_latent_channels, hidden=cfg.hyper_channels, y_channels=m, **fixed_point)
        if cfg.context_model not in CONTEXT_MODELS:
            raise ValueError(f"unknown context_model {cfg.context_model!r}; one of {CONTEXT_MODELS}")
        self.context = None
        if cfg.context_model == "checkerboard":
            self.context = CheckerboardContext(m, context_channels=cfg.context_channels, **fixed_point)
        # The entropy models' tensors by state-dict key (under ENTROPY_MODELS) while they are not built.
        self._held_entropy_state: dict[str, torch.Tensor] | None = None
        if entropy_models:
            self._build_entropy_models({})
        else:
            self._held_entropy_state = {}
        lam = torch.tensor(cfg.rate_lambdas, dtype=torch.float32)
        init = torch.sqrt(lam / lam[len(lam) // 2])[:, None].repeat(1, m)
        self.gain = nn.Parameter(init.clone())
        self.inverse_gain = nn.Parameter(1.0 / init)
        if cfg.hyper_gain:  # z's inverse is 1 / gain, so that it is exact between rate points too
            self.z_gain = nn.Parameter(torch.ones(len(lam), cfg.hyper_latent_channels))
        # Integer coding tables, filled by codec.update_tables() before saving and loaded with the weights.
        self.register_buffer("scale_table", torch.zeros(0, dtype=torch.float64))
        for name in TABLE_BUFFERS:
            self.register_buffer(name, torch.zeros(0, dtype=torch.int32))
        self.codec = LatentCodec(self)

    # ---- training ----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, rate_index: torch.Tensor) -> dict[str, torch.Tensor]:
        """Noisy-quantisation forward for training; y_hat is rounded with a straight-through
        estimator for the decoder, noise is used for the likelihoods."""
        y = self.analysis(x)
        zg = self.z_gain.abs()[rate_index][:, :, None, None] if self.cfg.hyper_gain else None
        return self.latent_forward(y, self.hyper_analysis(y), gain=self.gain.abs()[rate_index][:, :, None, None],
                                   inverse_gain=self.inverse_gain.abs()[rate_index][:, :, None, None], z_gain=zg)

    def latent_forward(self, y: torch.Tensor, z: torch.Tensor, *, gain: torch.Tensor, inverse_gain: torch.Tensor,
                       z_gain: torch.Tensor | None = None, noise: bool | None = None) -> dict[str, torch.Tensor]:
        """The differentiable coding of given latents (training, and the encoder's refinement): the
        likelihoods of y and z with uniform noise (`noise`; None: when the module is training) or
        rounded, and y_hat rounded with a straight-through gradient for the decoder."""
        if z_gain is None:
            z_tilde, z_lik = self.entropy_bottleneck(z, training=noise)
        else:
            z_tilde, z_lik = self.entropy_bottleneck(z * z_gain, training=noise)
            z_tilde = z_tilde / z_gain
        means, scales = self.prior(z_tilde)
        yg, mg, sg = y * gain, means * gain, scales * gain
        if self.context is not None:
            # Pass 1 codes the anchors with the hyperprior; pass 2 refines the rest from them.
            anchors = anchor_mask(*y.shape[-2:], device=y.device)
            # (the coder clamps the hyper scales before the gain; so does the context's input)
            dm, ds = self.context(_ste_round(yg - mg) * anchors, scales.clamp(min=self.cfg.scale_min) * gain)
            mg, sg = torch.where(anchors, mg, mg + dm), torch.where(anchors, sg, sg + ds)
        _, y_lik = self.gaussian(yg, sg, means=mg, training=noise)
        yg_hat = _ste_round(yg - mg) + mg
        return {"y_hat": yg_hat * inverse_gain, "z_hat": z_tilde, "y_likelihoods": y_lik, "z_likelihoods": z_lik}

    # ---- the entropy models, built when asked for --------------------------------------------------
    def _build_entropy_models(self, state: dict[str, torch.Tensor]) -> None:
        """compressai's EntropyBottleneck and GaussianConditional, loaded from `state` (their tensors
        by state-dict key under ENTROPY_MODELS) when it holds any, placed like the gains."""
        models = compressai_module("compressai.entropy_models")
        built = {"entropy_bottleneck": models.EntropyBottleneck(self.cfg.hyper_latent_channels),
                 "gaussian": models.GaussianConditional(None, scale_bound=self.cfg.scale_min)}
        for name, mod in built.items():
            own = {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")}
            if own:  # built late, for a loaded model: its tensors, placed like the gains
                mod.load_state_dict(own)
                mod.to(self.gain.device).train(self.training).requires_grad_(self.gain.requires_grad)
            setattr(self, name, mod)
        self._held_entropy_state = None

    def __getattr__(self, name: str) -> Any:
        if name in ENTROPY_MODELS and self.__dict__.get("_held_entropy_state") is not None:
            with _BUILD_LOCK:  # one build, whichever thread asks first
                held = self.__dict__.get("_held_entropy_state")
                if held is not None:
                    self._build_entropy_models(held)
            return self._modules[name]
        return super().__getattr__(name)

    def _save_to_state_dict(self, destination, prefix, keep_vars):  # type: ignore[no-untyped-def]
        super()._save_to_state_dict(destination, prefix, keep_vars)
        for key, value in (self.__dict__.get("_held_entropy_state") or {}).items():
            destination[prefix + key] = value

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        # Table buffers are resized to what the checkpoint holds, and cached tables dropped.
        for name, _ in self.named_buffers(recurse=False):
            key = prefix + name
            if key in state_dict:
                setattr(self, name, torch.empty_like(state_dict[key]))
        held = self.__dict__.get("_held_entropy_state")
        if held is not None:  # the entropy models are not built: their tensors are held as they come
            for key in [k for k in state_dict if k.startswith(tuple(f"{prefix}{n}." for n in ENTROPY_MODELS))]:
                held[key[len(prefix):]] = state_dict.pop(key)
        self.codec.clear_cache()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ---- inference --------------------------------------------------------------------------
    @torch.no_grad()
    def analyse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (1, 3, H, W), uint8 or float in [0, 1], H and W multiples of 64 -> latents (y, z)."""
        y = self.analysis.forward_banded(x)
        return y, self.hyper_analysis(y)


def _ste_round(x: torch.Tensor) -> torch.Tensor:
    """Rounding with a straight-through gradient (the decoder trains on what it will receive)."""
    return torch.round(x).detach() + x - x.detach()
