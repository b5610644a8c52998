"""Tiled decoding of large images: memory bounded by the tile, no visible seams.

Tiles overlap and are blended with linear ramps. When the overlap covers the decoder's receptive
field (the fidelity decoder needs about 3 latent cells) the blend is of identical values and the
result equals an untiled decode; for the diffusion UNet the ramps hide the seams.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    step = tile - 2 * overlap
    if step <= 0:
        raise ValueError("tile must be larger than twice the overlap")
    starts = list(range(0, size - tile, step)) + [size - tile]
    return sorted(set(starts))


def _ramp(n: int, lo_overlap: int, hi_overlap: int, device: torch.device) -> torch.Tensor:
    """Weights along one axis: zero within overlap/2 of an inner edge, then a linear ramp over
    `overlap` cells, so the neighbour's ramp is its exact complement and no value near a tile
    edge (where padding distorts it) is used."""
    i = torch.arange(n, device=device, dtype=torch.float32)
    w = torch.ones(n, device=device)
    if lo_overlap:
        w = torch.minimum(w, ((i - lo_overlap / 2 + 0.5) / lo_overlap).clamp(0, 1))
    if hi_overlap:
        j = n - 1 - i
        w = torch.minimum(w, ((j - hi_overlap / 2 + 0.5) / hi_overlap).clamp(0, 1))
    return w


def tiled_apply(fn: Callable[[list[torch.Tensor]], torch.Tensor], inputs: list[torch.Tensor], tile: int,
                overlap: int, scale: int, out_channels: int,
                progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Apply `fn` to aligned spatial tiles of `inputs` (all on the same grid as inputs[0]) and
    blend its outputs (`scale` times larger) into one (1, out_channels, H*scale, W*scale) tensor.
    Inputs on coarser grids (e.g. z at 1/4 of y) must be expanded by the caller."""
    _, _, h, w = inputs[0].shape
    if h <= tile and w <= tile:
        return fn(inputs)
    ys, xs = _starts(h, tile, overlap), _starts(w, tile, overlap)
    out = torch.zeros(1, out_channels, h * scale, w * scale)
    total = torch.zeros(1, 1, h * scale, w * scale)
    n, done = len(ys) * len(xs), 0
    for top in ys:
        th = min(tile, h - top)
        for left in xs:
            tw = min(tile, w - left)
            part = fn([t[..., top:top + th, left:left + tw] for t in inputs]).float().cpu()
            wy = _ramp(th * scale, overlap * scale if top > 0 else 0, overlap * scale if top + th < h else 0,
                       part.device)
            wx = _ramp(tw * scale, overlap * scale if left > 0 else 0, overlap * scale if left + tw < w else 0,
                       part.device)
            weight = wy[:, None] * wx[None, :]
            sl = (..., slice(top * scale, (top + th) * scale), slice(left * scale, (left + tw) * scale))
            out[sl] += part * weight
            total[sl] += weight
            done += 1
            if progress is not None:
                progress(done, n)
    return out / total.clamp(min=1e-8)
