"""The coding side of the compression module: integer tables, exact gains, coding passes, quantisers.

As compressai keeps its latent codecs apart from the networks that make the latents, this module
turns latents into the symbols and table indexes that ``sodec_plugin.entropy`` codes, and back. It
holds no parameters of its own: it reads the gains, the exact prior, the context model and the table
buffers of the `CompressionModule` it serves, so the saved layout of a model is that module's alone.
Everything here is exact (float64 dyadic gains, the fixed-point prior): encoder and decoder derive the
same indexes on every machine, which is what makes a stream decodable at all.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..config import LATENT_CELL, PAD_MULTIPLE, SODECConfig
from ..entropy import CodingTable, StreamDecoder, build_indexes, gaussian_pmfs
from .context import CheckerboardContext, anchor_mask

# Channels of y dequantised at a time (bounds the float64 temporaries of a large image).
Y_HAT_CHANNELS = 16
# Latent cells (16 px) per hyper-latent cell along each side: the prior upsamples z this many times.
Z_CELL = PAD_MULTIPLE // LATENT_CELL
TABLE_BUFFERS = ("y_cdf", "y_cdf_length", "y_offset", "z_cdf", "z_cdf_length", "z_offset", "z_median")


@dataclass
class Latents:
    """What the coder needs of one image: integer symbols and the rate position."""

    z_symbols: np.ndarray  # int32 (Cz, h, w)
    y_symbols: np.ndarray  # int32 (M, 4h, 4w)
    rate_position: int
    y_indexes: np.ndarray  # int32 (M, 4h, 4w): scale-table rows each symbol was coded with, as the decoder derives them


class LatentCodec:
    """Latents <-> symbols for one `CompressionModule` (its `.codec`; typed as nn.Module so that this
    module never imports the networks' module back)."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self._tables: tuple[CodingTable, CodingTable] | None = None

    @property
    def cfg(self) -> SODECConfig:
        return self.module.cfg

    # ---- coding tables ----------------------------------------------------------------------
    @torch.no_grad()
    def update_tables(self) -> None:
        """Compute the integer coding tables from the trained weights (once, at save time) into the
        module's buffers, where they are saved and loaded with the weights."""
        cfg, m = self.cfg, self.module
        st = torch.exp(torch.linspace(np.log(cfg.scale_min), np.log(cfg.scale_max), cfg.scale_levels,
                                      dtype=torch.float64))
        pmfs, offsets = gaussian_pmfs(st.numpy(), cfg.tail_mass)
        y_tab = CodingTable.from_pmfs(pmfs, offsets)
        eb = m.entropy_bottleneck
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
        m.scale_table = st
        m.y_cdf, m.y_cdf_length, m.y_offset = (torch.from_numpy(a) for a in (y_tab.cdf, y_tab.length, y_tab.offset))
        m.z_cdf, m.z_cdf_length, m.z_offset = (torch.from_numpy(a) for a in (z_tab.cdf, z_tab.length, z_tab.offset))
        m.z_median = med.int()
        self.clear_cache()
        if cfg.hyper_gain:  # refuse to save a model that cannot code some rate position
            for position in range(cfg.max_rate_position + 1):
                m.prior.first_layer(self.z_inverse_gain_at(position))

    def tables(self) -> tuple[CodingTable, CodingTable]:
        """(z table, y table), built once from the module's buffers."""
        if self._tables is None:
            m = self.module
            if m.y_cdf.numel() == 0:
                raise RuntimeError("coding tables are missing: call update_tables() after training")
            self._tables = (CodingTable(m.z_cdf.numpy(), m.z_cdf_length.numpy(), m.z_offset.numpy()),
                            CodingTable(m.y_cdf.numpy(), m.y_cdf_length.numpy(), m.y_offset.numpy()))
        return self._tables

    def clear_cache(self) -> None:
        """Forget the built tables (new weights were loaded or new tables computed)."""
        self._tables = None

    # ---- exact gains and parameters ---------------------------------------------------------
    def exact_gain(self, position: int, gains: torch.Tensor | None = None) -> torch.Tensor:
        """The y gain (or other `gains`, one row per rate point) at a rate position as exact
        dyadic float64 (linear between fixed-point gains of the two neighbouring rate points)."""
        cfg = self.cfg
        if not 0 <= position <= cfg.max_rate_position:
            raise ValueError(f"rate position {position} outside 0..{cfg.max_rate_position}")
        gains = self.module.gain if gains is None else gains
        g = torch.round(gains.detach().abs().double().cpu() * 2.0**cfg.gain_bits)
        i, j, k = self.neighbours(position)
        return (g[i] * (cfg.rate_substeps - k) + g[j] * k) / (cfg.rate_substeps * 2.0**cfg.gain_bits)

    def neighbours(self, position: int) -> tuple[int, int, int]:
        """The rate points (i, j) a position lies between, and its substep k from i."""
        i, k = divmod(position, self.cfg.rate_substeps)
        return i, min(i + 1, self.cfg.num_rates - 1), k

    def rate_lambda_at(self, position: int) -> float:
        """The rate-distortion weight at a position: geometric between the rate points' lambdas,
        as the inverse gains are."""
        i, j, k = self.neighbours(position)
        t = k / self.cfg.rate_substeps
        return self.cfg.rate_lambdas[i] ** (1 - t) * self.cfg.rate_lambdas[j] ** t

    def z_inverse_gain_at(self, position: int) -> torch.Tensor | None:
        """The inverse hyper gain (float64) the prior reads z's symbols through: 1 / the exact
        gain, a correctly rounded IEEE division, so encoder and decoder agree. None without one."""
        if not self.cfg.hyper_gain:
            return None
        g = self.exact_gain(position, self.module.z_gain)
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
        i, j, k = self.neighbours(position)
        t = k / self.cfg.rate_substeps
        ig = self.module.inverse_gain.detach().abs()
        return ig[i] ** (1 - t) * ig[j] ** t

    def hyper_parameters(self, z_hat: torch.Tensor, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact gained means and scales (float64, CPU) of y from the hyperprior alone."""
        means, scales = self.module.prior.exact(z_hat, self.z_inverse_gain_at(position))  # views: scaled in place
        g = self.exact_gain(position)[None, :, None, None]
        return means.mul_(g), scales.clamp_(min=self.cfg.scale_min).mul_(g)

    def y_parameters(self, z_hat: torch.Tensor, position: int) -> tuple[torch.Tensor, np.ndarray]:
        """Exact means (float64, CPU) and table indexes of y for integer z_hat (1, Cz, h, w),
        from the hyperprior alone (the first pass when there is a context model)."""
        means, scales = self.hyper_parameters(z_hat, position)
        return means, build_indexes(scales.numpy(), self.module.scale_table.numpy())

    # ---- coding passes ----------------------------------------------------------------------
    def y_passes(self, h: int, w: int) -> list[np.ndarray]:
        """Latent positions (bool (h, w)) of each coding pass, in stream order."""
        if self.module.context is None:
            return [np.ones((h, w), dtype=bool)]
        a = anchor_mask(h, w).numpy()
        return [a, ~a]

    def scan(self, a: np.ndarray) -> np.ndarray:
        """(M, h, w) -> 1-D in stream order: pass by pass, channel-major within a pass."""
        return np.concatenate([a[:, p].ravel() for p in self.y_passes(*a.shape[-2:])])

    def code_y(self, z_hat: torch.Tensor, position: int,
               symbols_of: Callable[[torch.Tensor, np.ndarray, np.ndarray], np.ndarray], *,
               keep_indexes: bool = True) -> tuple[np.ndarray, np.ndarray | None, torch.Tensor]:
        """Run the coding passes: `symbols_of(means, indexes, positions)` gives the symbols (M, n)
        of one pass (the encoder rounds y, the decoder reads the stream). Returns the symbols and
        indexes (M, h, w) (None unless `keep_indexes`) and the exact gained means (1, M, h, w) every
        symbol was coded with."""
        means, scales = self.hyper_parameters(z_hat, position)
        h, w = means.shape[-2:]
        symbols = np.zeros((means.shape[1], h, w), dtype=np.int32)
        indexes = np.zeros((means.shape[1], h, w), dtype=np.int32) if keep_indexes else None
        for k, pos in enumerate(self.y_passes(h, w)):
            sel = torch.from_numpy(pos)
            if k:  # the context pass: refine this pass's positions from the symbols coded so far
                self._context().exact(torch.from_numpy(symbols)[None], scales, add_to=(means, scales))
            # (M, 1, n): build_indexes works a channel at a time
            idx = build_indexes(scales[0][:, sel].numpy()[:, None], self.module.scale_table.numpy())[:, 0]
            if indexes is not None:
                indexes[:, pos] = idx
            symbols[:, pos] = symbols_of(means[0][:, sel], idx, pos)
        return symbols, indexes, means

    def _context(self) -> CheckerboardContext:
        if self.module.context is None:
            raise RuntimeError("this model has no context model")
        return self.module.context

    # ---- geometry ---------------------------------------------------------------------------
    def pad_multiple(self) -> int:
        return PAD_MULTIPLE

    def z_shape(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(1, Cz, h, w) of z for a padded image."""
        return (1, self.cfg.hyper_latent_channels, height // PAD_MULTIPLE, width // PAD_MULTIPLE)

    def z_indexes(self, shape: tuple[int, ...]) -> np.ndarray:
        c = shape[1]
        return np.broadcast_to(np.arange(c, dtype=np.int32)[:, None, None], (c, *shape[2:])).copy()

    # ---- quantise (encoder) and read back (decoder) -----------------------------------------
    def quantize(self, y: torch.Tensor, z: torch.Tensor, position: int) -> Latents:
        """The encoder's latents y (1, M, h, w) and z (1, Cz, h/4, w/4) -> coded symbols."""
        z_sym, z_hat = self.quantize_z(z, position)
        y_sym, indexes = self.quantize_y(y.float(), z_hat, position)
        return Latents(z_sym, y_sym, position, indexes)

    def quantize_z(self, z: torch.Tensor, position: int) -> tuple[np.ndarray, torch.Tensor]:
        """The encoder's z (1, Cz, h, w): symbols (Cz, h, w), clamped to the tables, and the
        integer z_hat (float64) the prior reads."""
        z_tab, _ = self.tables()
        z = z.double().cpu()
        if self.cfg.hyper_gain:
            z = z * self.exact_gain(position, self.module.z_gain)[None, :, None, None]
        med = self.module.z_median.double()[None, :, None, None]
        zi = self.z_indexes(tuple(z.shape))
        z_sym = z_tab.clamp(torch.round(z - med).numpy().astype(np.int64).reshape(-1), zi.reshape(-1))
        z_sym = z_sym.reshape(z.shape[1:]).astype(np.int32)
        return z_sym, self.z_hat_from_symbols(z_sym)

    def quantize_y(self, y: torch.Tensor, z_hat: torch.Tensor, position: int) -> tuple[np.ndarray, np.ndarray]:
        """The encoder's side of code_y: y rounded pass by pass; symbols and indexes (M, h, w)."""
        _, y_tab = self.tables()
        y, gain = y.cpu()[0], self.exact_gain(position)[:, None]

        def round_y(means: torch.Tensor, idx: np.ndarray, pos: np.ndarray) -> np.ndarray:
            # the gained y of this pass only (a full-size float64 copy would be 49 MB at 12 MP)
            yg = y[:, torch.from_numpy(pos)].double().mul_(gain)
            sym = torch.round(yg.sub_(means)).numpy().astype(np.int64)
            return y_tab.clamp(sym.reshape(-1), idx.reshape(-1)).reshape(sym.shape).astype(np.int32)

        symbols, indexes, _ = self.code_y(z_hat, position, round_y)
        assert indexes is not None
        return symbols, indexes

    def decode_y(self, data: bytes, z_hat: torch.Tensor, position: int) -> tuple[np.ndarray, torch.Tensor]:
        """The decoder's side of code_y: symbols (M, h, w) read from one stream, and their means."""
        _, y_tab = self.tables()
        h, w = z_hat.shape[-2:]
        stream = StreamDecoder(data, self.cfg.latent_channels * Z_CELL**2 * h * w, y_tab)
        symbols, _, means = self.code_y(z_hat, position, lambda _m, idx, _p: stream.read(idx), keep_indexes=False)
        return symbols, means

    def z_hat_from_symbols(self, z_symbols: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(z_symbols.astype(np.float64))[None] + self.module.z_median.double()[None, :, None, None]

    def y_hat_from_symbols(self, y_symbols: np.ndarray, means: torch.Tensor, position: int) -> torch.Tensor:
        """Dequantised, inverse-gained y_hat (1, M, h, w) as float32 on the CPU (summed in float64 a few
        channels at a time: no full-size float64 copy)."""
        ig = self.inverse_gain_at(position).float().cpu()
        out = torch.empty(means.shape, dtype=torch.float32)
        symbols = torch.from_numpy(y_symbols)
        for c in range(0, means.shape[1], Y_HAT_CHANNELS):
            part = symbols[c:c + Y_HAT_CHANNELS][None].double().add_(means[:, c:c + Y_HAT_CHANNELS])
            out[:, c:c + Y_HAT_CHANNELS] = part.float().mul_(ig[c:c + Y_HAT_CHANNELS, None, None])
        return out
