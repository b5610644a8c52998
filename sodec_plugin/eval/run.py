"""`sodec eval`: the SODEC engine plugged into the rate-distortion report."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from ..rates import LADDERS, SMOOTH_RUNG, check_resampling, quality_to_position
from .report import DEFAULT_BASELINES, evaluate, format_markdown
from .scores import DEFAULT_CROP, DEFAULT_METRICS


def default_qualities(max_position: int, count: int = 8) -> list[float]:
    """Qualities that land exactly on `count` evenly spaced rate positions, the model's rate points
    when count is its number of rate points (1 = lowest, 100 = highest). Not always integers: with
    128 positions no integer quality reaches position 64, but 50.5 does."""
    if max_position == 0:  # one rate point
        return [100.0]
    step = max(1, max_position // max(1, count - 1))
    return sorted({round(1 + 99 * p / max_position, 4) for p in range(0, max_position + 1, step)})


def eval_qualities(max_position: int, count: int = 8) -> list[float]:
    """default_qualities and, below the highest quality where resampling hands over to full size
    (rates.LADDERS, rates.SMOOTH_RUNG), the qualities halfway between them: the factor changes in
    there, so the curves need the points (15 instead of 9 for a model of 9 rate points)."""
    points = default_qualities(max_position, count)
    top = round(max([full for _, _, full in LADDERS] + [SMOOTH_RUNG[-1]]) * max_position)
    halves = {round((a + b) / 2, 4) for a, b in zip(points, points[1:], strict=False)
              if quality_to_position(a, max_position) < top}
    return sorted(set(points) | halves)


def curve_label(name: str, guidance: float) -> str:
    """The name of the curve of model `name` decoded at `guidance`, e.g. "sodec-lite-13@1a2b3c4d g=0.5"."""
    return f"{name} g={guidance:g}"


def guidance_curves(m: Any, name: str, guidance: Sequence[float] | None, mode: str) -> dict[str, float | None]:
    """Curve name -> the guidance it decodes at (None: the model's default). No values: one curve, `name`,
    as before guidance could be chosen. Several values for a model that does not read the guidance are
    refused: they would give one curve several times."""
    from ..codec import guidance_is_read, resolve_guidance

    values = list(dict.fromkeys(resolve_guidance(m, g) for g in guidance or ()))
    if not values:
        return {name: None}
    if not guidance_is_read(m, mode):
        why = f"{m.identity} does not read the fidelity guidance" + (" on the fidelity path" if m.has_diffusion else "")
        if len(values) > 1:
            raise ValueError(f"{why}: --guidance {' '.join(f'{g:g}' for g in values)} would give the same curve "
                             f"{len(values)} times")
        print(f"note: {why}; --guidance {values[0]:g} changes nothing", file=sys.stderr)
        return {name: None}
    return {curve_label(name, g): g for g in values}


def run_eval(folder: str | Path, *, model: Any = None, qualities: Sequence[float] | None = None,
             out_dir: str | Path | None = "eval-out", device: Any = None, baselines: Sequence[str] = DEFAULT_BASELINES,
             mode: str = "auto", limit: int | None = None, progress: bool = True, jobs: int = 1,
             effort: int = 0, metrics: Sequence[str] = DEFAULT_METRICS, crop: int | None = DEFAULT_CROP,
             cache: str | Path | None = None, guidance: Sequence[float] | None = None,
             resampling: int | str | None = None) -> dict[str, Any]:
    """Real .sdc bytes for every image and quality (encoded at `effort` and `resampling`: a forced
    factor names the curve, e.g. "MODEL resampling=1"), decoded, scored (`metrics`,
    the perceptual ones on the centre `crop`) and compared; `cache` keeps baseline encodes and scores.
    `guidance`: fidelity guidance values, one curve each (guidance_curves), all decoded from one encode
    per image and quality; none: the model's default."""
    from .. import codec
    from ..engine import get_model

    m = get_model(model, device=device)
    qualities = list(qualities) if qualities else eval_qualities(m.cfg.max_rate_position, m.cfg.num_rates)
    factor = check_resampling(resampling)
    name = m.identity + (f"+effort{effort}" if effort else "") + (f" resampling={factor}" if factor else "")
    curves = guidance_curves(m, name, guidance, mode)

    def codec_fn(image: Image.Image, quality: float) -> tuple[bytes, float, dict[str, tuple[Image.Image, float]]]:
        t0 = time.perf_counter()
        data = codec.compress(image, model=m, quality=quality, effort=effort, resampling=resampling)
        enc_s = time.perf_counter() - t0
        decodes = {}
        for curve, g in curves.items():
            t1 = time.perf_counter()
            out = codec.decompress(data, model=m, mode=mode, guidance=g)
            decodes[curve] = (out, time.perf_counter() - t1)
        return data, enc_s, decodes

    codec_fn(Image.new("RGB", (64, 64)), qualities[0])  # warm-up: first-call costs are not the codec's
    read = codec.guidance_is_read(m, mode)
    result = evaluate(folder, codec_fn, qualities, baselines=tuple(baselines), out_dir=out_dir, progress=progress,
                      codec_name=name, limit=limit, jobs=jobs, metrics=metrics, crop=crop, cache=cache,
                      curves=list(curves),
                      guidance={c: codec.resolve_guidance(m, g) for c, g in curves.items()} if read else None,
                      default_guidance=m.cfg.default_guidance if read else None)
    if progress:
        print(format_markdown(result))
    return result
