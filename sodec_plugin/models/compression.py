"""The VAE compression module: analysis E, hyper analysis H_a, the priors P and rate gains.

Layered as in compressai: networks here, entropy models (EntropyBottleneck for z, a mean-scale
GaussianConditional for y) for the training likelihoods, and the integer coding tables that
``sodec_plugin.entropy`` turns into bytes. One model covers every rate point with a gain vector
per point (Cui et al., "Asymmetric gained deep image compression", 2021): y is scaled by the
gain before rounding, and the prior's means and scales are scaled by the same exact gain. With
`hyper_gain`, z is scaled too, and the prior reads the symbols through an exact inverse gain.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import GDN
from torch import nn

from ..config import PAD_MULTIPLE, SODECConfig
from ..entropy import CodingTable, StreamDecoder, build_indexes, gaussian_pmfs
from ..tiling import banded_reduce
from .blocks import identity_blocks
from .context import CheckerboardContext, anchor_mask
from .prior import PriorSynthesis

CONTEXT_MODELS = ("none", "checkerboard")


# Encoder bands: about this many input pixels each (a 12 MP encode then peaks ~260 MB above the loaded
# model instead of ~2.7 GB). The first three stages see 14 px on each side (three 5x5 stride-2
# convolutions), so 2 rows of their 1/8-resolution output (16 px) of overlap give exact values.
ENCODE_BAND_PIXELS = 1 << 20
ENCODE_BAND_OVERLAP = 2


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

    def forward_banded(self, x: torch.Tensor, band: int | None = None, overlap: int = ENCODE_BAND_OVERLAP
                       ) -> torch.Tensor:
        """forward() for inference on large images: the first three stages (their 1/2 and 1/4
        resolution features are the largest tensors an encode makes: 64 channels x H/2 x W/2) run in
        bands of `band` rows of their 1/8-resolution output (default: bands of about
        ENCODE_BAND_PIXELS input pixels); the rest runs on the whole 1/8 grid."""
        head, tail = self.net[:6], self.net[6:]
        p = self.net[0].weight

        def stages123(t: torch.Tensor) -> torch.Tensor:
            if t.dtype == torch.uint8:  # 8-bit pixels become floats one band at a time
                t = t.to(p.device, p.dtype).div_(255.0)
            return head(t.to(p.device, p.dtype) * 2.0 - 1.0)

        band = band or max(8, ENCODE_BAND_PIXELS // (8 * x.shape[-1]))
        h = banded_reduce(stages123, x, factor=8, band=band, overlap=overlap)
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


@dataclass
class Latents:
    """What the coder needs of one image: integer symbols and the rate position."""

    z_symbols: np.ndarray  # int32 (Cz, h, w)
    y_symbols: np.ndarray  # int32 (M, 4h, 4w)
    rate_position: int
    y_indexes: np.ndarray  # int32 (M, 4h, 4w): scale-table rows each symbol was coded with, as the decoder derives them


class CompressionModule(nn.Module):
    def __init__(self, cfg: SODECConfig) -> None:
        super().__init__()
        if cfg.rate_substeps & (cfg.rate_substeps - 1):
            raise ValueError("rate_substeps must be a power of two (exact gain interpolation)")
        self.cfg = cfg
        m = cfg.latent_channels
        self.analysis = Analysis(cfg.analysis_channels, m, cfg.analysis_blocks)
        self.hyper_analysis = HyperAnalysis(m, cfg.hyper_channels, cfg.hyper_latent_channels)
        self.prior = PriorSynthesis(cfg.hyper_latent_channels, cfg.hyper_channels, m,
                                    cfg.prior_weight_bits, cfg.prior_activation_bits, cfg.prior_output_bits)
        if cfg.context_model not in CONTEXT_MODELS:
            raise ValueError(f"unknown context_model {cfg.context_model!r}; one of {CONTEXT_MODELS}")
        self.context = None
        if cfg.context_model == "checkerboard":
            self.context = CheckerboardContext(m, cfg.context_channels, cfg.prior_weight_bits,
                                               cfg.prior_activation_bits, cfg.prior_output_bits)
        self.entropy_bottleneck = EntropyBottleneck(cfg.hyper_latent_channels)
        self.gaussian = GaussianConditional(None, scale_bound=cfg.scale_min)
        lam = torch.tensor(cfg.rate_lambdas, dtype=torch.float32)
        init = torch.sqrt(lam / lam[len(lam) // 2])[:, None].repeat(1, m)
        self.gain = nn.Parameter(init.clone())
        self.inverse_gain = nn.Parameter(1.0 / init)
        if cfg.hyper_gain:  # z's inverse is 1 / gain, so that it is exact between rate points too
            self.z_gain = nn.Parameter(torch.ones(len(lam), cfg.hyper_latent_channels))
        # Integer coding tables, filled by update_tables() before saving and loaded with the weights.
        self.register_buffer("scale_table", torch.zeros(0, dtype=torch.float64))
        for name in ("y_cdf", "y_cdf_length", "y_offset", "z_cdf", "z_cdf_length", "z_offset", "z_median"):
            self.register_buffer(name, torch.zeros(0, dtype=torch.int32))

    # ---- training ---------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, rate_index: torch.Tensor) -> dict[str, torch.Tensor]:
        """Noisy-quantisation forward for training; y_hat is rounded with a straight-through
        estimator for the decoder, noise is used for the likelihoods."""
        y = self.analysis(x)
        z = self.hyper_analysis(y)
        if self.cfg.hyper_gain:
            zg = self.z_gain.abs()[rate_index][:, :, None, None]
            z_tilde, z_lik = self.entropy_bottleneck(z * zg)
            z_tilde = z_tilde / zg
        else:
            z_tilde, z_lik = self.entropy_bottleneck(z)
        means, scales = self.prior(z_tilde)
        g = self.gain.abs()[rate_index][:, :, None, None]
        yg, mg, sg = y * g, means * g, scales * g
        if self.context is not None:
            # Pass 1 codes the anchors with the hyperprior; pass 2 refines the rest from them.
            anchors = anchor_mask(*y.shape[-2:], device=y.device)
            # (the coder clamps the hyper scales before the gain; so does the context's input)
            dm, ds = self.context(_ste_round(yg - mg) * anchors, scales.clamp(min=self.cfg.scale_min) * g)
            mg, sg = torch.where(anchors, mg, mg + dm), torch.where(anchors, sg, sg + ds)
        _, y_lik = self.gaussian(yg, sg, means=mg)
        yg_hat = _ste_round(yg - mg) + mg
        y_hat = yg_hat * self.inverse_gain.abs()[rate_index][:, :, None, None]
        return {"y_hat": y_hat, "z_hat": z_tilde, "y_likelihoods": y_lik, "z_likelihoods": z_lik}

    # ---- coding tables ----------------------------------------------------------------------
    @torch.no_grad()
    def update_tables(self) -> None:
        """Compute the integer coding tables from the trained weights (once, at save time)."""
        cfg = self.cfg
        st = torch.exp(torch.linspace(np.log(cfg.scale_min), np.log(cfg.scale_max), cfg.scale_levels,
                                      dtype=torch.float64))
        pmfs, offsets = gaussian_pmfs(st.numpy(), cfg.tail_mass)
        y_tab = CodingTable.from_pmfs(pmfs, offsets)
        eb = self.entropy_bottleneck
        if eb.quantiles.device.type != "cpu":  # a GPU-trained run: same tables as an export on the CPU
            eb = copy.deepcopy(eb).cpu()
        q = eb.quantiles.detach().double()[:, 0, :]
        med = torch.round(q[:, 1])
        lo = torch.clamp(torch.ceil(med - q[:, 0]), min=0).long()
        hi = torch.clamp(torch.ceil(q[:, 2] - med), min=0).long()
        z_pmfs, z_offsets = [], []
        for c in range(q.shape[0]):
            samples = torch.arange(-lo[c].item(), hi[c].item() + 1, dtype=torch.float32) + med[c].float()
            pmf, _, _ = eb._likelihood(samples.reshape(1, 1, -1).expand(q.shape[0], 1, -1).contiguous(),
                                       stop_gradient=True)
            z_pmfs.append(pmf[c, 0].double().clamp(min=0).numpy())
            z_offsets.append(-int(lo[c]))
        z_tab = CodingTable.from_pmfs(z_pmfs, z_offsets)
        self.scale_table = st
        self.y_cdf, self.y_cdf_length, self.y_offset = (torch.from_numpy(a) for a in
                                                        (y_tab.cdf, y_tab.length, y_tab.offset))
        self.z_cdf, self.z_cdf_length, self.z_offset = (torch.from_numpy(a) for a in
                                                        (z_tab.cdf, z_tab.length, z_tab.offset))
        self.z_median = med.int()
        self.__dict__.pop("_tables", None)
        if cfg.hyper_gain:  # refuse to save a model that cannot code some rate position
            for position in range(cfg.max_rate_position + 1):
                self.prior.first_layer(self.z_inverse_gain_at(position))

    def tables(self) -> tuple[CodingTable, CodingTable]:
        cached = self.__dict__.get("_tables")
        if cached is None:
            if self.y_cdf.numel() == 0:
                raise RuntimeError("coding tables are missing: call update_tables() after training")
            cached = (CodingTable(self.z_cdf.numpy(), self.z_cdf_length.numpy(), self.z_offset.numpy()),
                      CodingTable(self.y_cdf.numpy(), self.y_cdf_length.numpy(), self.y_offset.numpy()))
            self.__dict__["_tables"] = cached
        return cached

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        # Table buffers are resized to what the checkpoint holds, and cached tables dropped.
        for name, _ in self.named_buffers(recurse=False):
            key = prefix + name
            if key in state_dict:
                setattr(self, name, torch.empty_like(state_dict[key]))
        self.__dict__.pop("_tables", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ---- exact gains and parameters ---------------------------------------------------------
    def exact_gain(self, position: int, gains: torch.Tensor | None = None) -> torch.Tensor:
        """The y gain (or other `gains`, one row per rate point) at a rate position as exact
        dyadic float64 (linear between fixed-point gains of the two neighbouring rate points)."""
        cfg = self.cfg
        if not 0 <= position <= cfg.max_rate_position:
            raise ValueError(f"rate position {position} outside 0..{cfg.max_rate_position}")
        gains = self.gain if gains is None else gains
        g = torch.round(gains.detach().abs().double().cpu() * 2.0**cfg.gain_bits)
        i, k = divmod(position, cfg.rate_substeps)
        j = min(i + 1, cfg.num_rates - 1)
        return (g[i] * (cfg.rate_substeps - k) + g[j] * k) / (cfg.rate_substeps * 2.0**cfg.gain_bits)

    def z_inverse_gain_at(self, position: int) -> torch.Tensor | None:
        """The inverse hyper gain (float64) the prior reads z's symbols through: 1 / the exact
        gain, a correctly rounded IEEE division, so encoder and decoder agree. None without one."""
        if not self.cfg.hyper_gain:
            return None
        g = self.exact_gain(position, self.z_gain)
        if not bool((g > 0).all()):
            raise ValueError(f"a hyper gain of rate position {position} rounds to 0 at gain_bits")
        return 1.0 / g

    def z_dequantized(self, z_hat: torch.Tensor, position: int) -> torch.Tensor:
        """z as the networks after the prior (H_s) see it: the coded lattice times the inverse
        hyper gain."""
        ig = self.z_inverse_gain_at(position)
        return z_hat if ig is None else z_hat * ig.to(z_hat)[None, :, None, None]

    def inverse_gain_at(self, position: int) -> torch.Tensor:
        """Decoder-side inverse gain (geometric interpolation; need not be exact)."""
        i, k = divmod(position, self.cfg.rate_substeps)
        j = min(i + 1, self.cfg.num_rates - 1)
        t = k / self.cfg.rate_substeps
        ig = self.inverse_gain.detach().abs()
        return ig[i] ** (1 - t) * ig[j] ** t

    def hyper_parameters(self, z_hat: torch.Tensor, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact gained means and scales (float64, CPU) of y from the hyperprior alone."""
        means, scales = self.prior.exact(z_hat, self.z_inverse_gain_at(position))  # views: scaled in place
        g = self.exact_gain(position)[None, :, None, None]
        return means.mul_(g), scales.clamp_(min=self.cfg.scale_min).mul_(g)

    def y_parameters(self, z_hat: torch.Tensor, position: int) -> tuple[torch.Tensor, np.ndarray]:
        """Exact means (float64, CPU) and table indexes of y for integer z_hat (1, Cz, h, w),
        from the hyperprior alone (the first pass when there is a context model)."""
        means, scales = self.hyper_parameters(z_hat, position)
        return means, build_indexes(scales.numpy(), self.scale_table.numpy())

    def y_passes(self, h: int, w: int) -> list[np.ndarray]:
        """Latent positions (bool (h, w)) of each coding pass, in stream order."""
        if self.context is None:
            return [np.ones((h, w), dtype=bool)]
        a = anchor_mask(h, w).numpy()
        return [a, ~a]

    def scan(self, a: np.ndarray) -> np.ndarray:
        """(M, h, w) -> 1-D in stream order: pass by pass, channel-major within a pass."""
        return np.concatenate([a[:, p].ravel() for p in self.y_passes(*a.shape[-2:])])

    def code_y(self, z_hat: torch.Tensor, position: int,
               symbols_of: Callable[[torch.Tensor, np.ndarray, np.ndarray], np.ndarray]
               ) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
        """Run the coding passes: `symbols_of(means, indexes, positions)` gives the symbols (M, n)
        of one pass (the encoder rounds y, the decoder reads the stream). Returns the symbols and
        indexes (M, h, w) and the exact gained means (1, M, h, w) every symbol was coded with."""
        means, scales = self.hyper_parameters(z_hat, position)
        h, w = means.shape[-2:]
        symbols = np.zeros((means.shape[1], h, w), dtype=np.int32)
        indexes = np.zeros((means.shape[1], h, w), dtype=np.int32)
        for k, pos in enumerate(self.y_passes(h, w)):
            sel = torch.from_numpy(pos)
            if k:  # the context pass: refine this pass's positions from the symbols coded so far
                dm, ds = self._context().exact(torch.from_numpy(symbols).double()[None], scales)
                means.add_(dm.mul_(sel)), scales.add_(ds.mul_(sel))
                del dm, ds
            # (M, 1, n): build_indexes works a channel at a time
            idx = build_indexes(scales[0][:, sel].numpy()[:, None], self.scale_table.numpy())[:, 0]
            indexes[:, pos] = idx
            symbols[:, pos] = symbols_of(means[0][:, sel], idx, pos)
        return symbols, indexes, means

    def _context(self) -> CheckerboardContext:
        if self.context is None:
            raise RuntimeError("this model has no context model")
        return self.context

    def z_shape(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(1, Cz, h, w) of z for a padded image."""
        return (1, self.cfg.hyper_latent_channels, height // 64, width // 64)

    def z_indexes(self, shape: tuple[int, ...]) -> np.ndarray:
        c = shape[1]
        return np.broadcast_to(np.arange(c, dtype=np.int32)[:, None, None], (c, *shape[2:])).copy()

    # ---- inference --------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, x: torch.Tensor, position: int) -> Latents:
        """x: (1, 3, H, W), uint8 or float in [0, 1], H and W multiples of 64."""
        y = self.analysis.forward_banded(x)
        z_sym, z_hat = self.quantize_z(self.hyper_analysis(y), position)
        y_sym, indexes = self.quantize_y(y.float(), z_hat, position)
        return Latents(z_sym, y_sym, position, indexes)

    def quantize_z(self, z: torch.Tensor, position: int) -> tuple[np.ndarray, torch.Tensor]:
        """The encoder's z (1, Cz, h, w): symbols (Cz, h, w), clamped to the tables, and the
        integer z_hat (float64) the prior reads."""
        z_tab, _ = self.tables()
        z = z.double().cpu()
        if self.cfg.hyper_gain:
            z = z * self.exact_gain(position, self.z_gain)[None, :, None, None]
        med = self.z_median.double()[None, :, None, None]
        zi = self.z_indexes(tuple(z.shape))
        z_sym = z_tab.clamp(torch.round(z - med).numpy().astype(np.int64).reshape(-1), zi.reshape(-1))
        z_sym = z_sym.reshape(z.shape[1:]).astype(np.int32)
        return z_sym, self.z_hat_from_symbols(z_sym)

    def quantize_y(self, y: torch.Tensor, z_hat: torch.Tensor, position: int) -> tuple[np.ndarray, np.ndarray]:
        """The encoder's side of code_y: y rounded pass by pass; symbols and indexes (M, h, w)."""
        _, y_tab = self.tables()
        yg = (y.double().cpu() * self.exact_gain(position)[None, :, None, None])[0]

        def round_y(means: torch.Tensor, idx: np.ndarray, pos: np.ndarray) -> np.ndarray:
            sym = torch.round(yg[:, torch.from_numpy(pos)] - means).numpy().astype(np.int64)
            return y_tab.clamp(sym.reshape(-1), idx.reshape(-1)).reshape(sym.shape).astype(np.int32)

        symbols, indexes, _ = self.code_y(z_hat, position, round_y)
        return symbols, indexes

    def decode_y(self, data: bytes, z_hat: torch.Tensor, position: int) -> tuple[np.ndarray, torch.Tensor]:
        """The decoder's side of code_y: symbols (M, h, w) read from one stream, and their means."""
        _, y_tab = self.tables()
        h, w = z_hat.shape[-2:]  # the prior upsamples z 4x
        stream = StreamDecoder(data, self.cfg.latent_channels * 16 * h * w, y_tab)
        symbols, _, means = self.code_y(z_hat, position, lambda _m, idx, _p: stream.read(idx))
        return symbols, means

    def z_hat_from_symbols(self, z_symbols: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(z_symbols.astype(np.float64))[None] + self.z_median.double()[None, :, None, None]

    def y_hat_from_symbols(self, y_symbols: np.ndarray, means: torch.Tensor, position: int) -> torch.Tensor:
        """Dequantised, inverse-gained y_hat (1, M, h, w) as float32 on the CPU."""
        yg = torch.from_numpy(y_symbols).double()[None].add_(means)
        return yg.float().mul_(self.inverse_gain_at(position).float().cpu()[None, :, None, None])

    def pad_multiple(self) -> int:
        return PAD_MULTIPLE


def _ste_round(x: torch.Tensor) -> torch.Tensor:
    """Rounding with a straight-through gradient (the decoder trains on what it will receive)."""
    return torch.round(x).detach() + x - x.detach()
