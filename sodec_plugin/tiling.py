"""Tiled decoding of the diffusion path (UNet and VAE) on large images: memory bounded by the tile,
no visible seams.

Tiles overlap and are blended with linear ramps that hide the seams. (The fidelity decoder does not
tile: it streams bands of rows, models/rows.py, and computes the untiled image.)
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


def balanced_tile(size: int, tile: int, overlap: int) -> int:
    """The smallest tile that covers `size` with as many tiles as `tile` needs: the engine
    used to place the last tile flush with the edge, so a 128-cell side in 48-cell tiles (overlap 8) is
    4 x 48 = 192 cells of work; balanced, 4 x 44 = 176. The overlap between neighbours is kept."""
    if size <= tile:
        return size
    step = tile - 2 * overlap
    if step <= 0:
        raise ValueError("tile must be larger than twice the overlap")
    n = -(-(size - 2 * overlap) // step)
    return -(-(size + (n - 1) * 2 * overlap) // n)


def tiled_apply(fn: Callable[[list[torch.Tensor]], torch.Tensor], inputs: list[torch.Tensor], tile: int,
                overlap: int, scale: int, out_channels: int, progress: Callable[[int, int], None] | None = None,
                *, balanced: bool = True, workers: int = 1) -> torch.Tensor:
    """Apply `fn` to aligned spatial tiles of `inputs` (all on the grid of inputs[0]) and blend its
    outputs (`scale` times larger) into one (1, out_channels, H*scale, W*scale) tensor. Balanced
    tiles keep the overlap but avoid a last tile that mostly repeats its neighbour; `workers`
    threads decode tiles at once (each with its share of torch's threads), blended in a fixed
    order so the result does not depend on the worker count."""
    from concurrent.futures import ThreadPoolExecutor

    _, _, h, w = inputs[0].shape
    if h <= tile and w <= tile:
        return fn(inputs)
    ty, tx = (balanced_tile(h, tile, overlap), balanced_tile(w, tile, overlap)) if balanced else (tile, tile)
    boxes = [(top, min(ty, h - top), left, min(tx, w - left))
             for top in _starts(h, ty, overlap) for left in _starts(w, tx, overlap)]
    inference = torch.is_inference_mode_enabled()

    def run(box: tuple[int, int, int, int]) -> torch.Tensor:
        top, th, left, tw = box
        with torch.inference_mode(inference):
            return fn([t[..., top:top + th, left:left + tw] for t in inputs]).float().cpu()

    out = torch.zeros(1, out_channels, h * scale, w * scale)
    total = torch.zeros(1, 1, h * scale, w * scale)
    threads = torch.get_num_threads()
    workers = max(1, min(workers, len(boxes)))
    if workers > 1:
        torch.set_num_threads(max(1, threads // workers))
    try:
        with ThreadPoolExecutor(workers) as pool:
            parts = pool.map(run, boxes) if workers > 1 else map(run, boxes)
            for done, (box, part) in enumerate(zip(boxes, parts, strict=True), 1):
                top, th, left, tw = box
                wy = _ramp(th * scale, overlap * scale if top > 0 else 0, overlap * scale if top + th < h else 0,
                           part.device)
                wx = _ramp(tw * scale, overlap * scale if left > 0 else 0, overlap * scale if left + tw < w else 0,
                           part.device)
                weight = wy[:, None] * wx[None, :]
                sl = (..., slice(top * scale, (top + th) * scale), slice(left * scale, (left + tw) * scale))
                out[sl] += part * weight
                total[sl] += weight
                if progress is not None:
                    progress(done, len(boxes))
    finally:
        torch.set_num_threads(threads)
    return out.div_(total.clamp_(min=1e-8))
