"""`sodec eval`: the SODEC engine plugged into the rate-distortion report."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

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


def run_eval(folder: str | Path, *, model: Any = None, qualities: Sequence[float] | None = None,
             out_dir: str | Path | None = "eval-out", device: Any = None, baselines: Sequence[str] = DEFAULT_BASELINES,
             mode: str = "auto", limit: int | None = None, progress: bool = True, jobs: int = 1,
             effort: int = 0, metrics: Sequence[str] = DEFAULT_METRICS, crop: int | None = DEFAULT_CROP,
             cache: str | Path | None = None) -> dict[str, Any]:
    """Real .sdc bytes for every image and quality (encoded at `effort`), decoded, scored (`metrics`,
    the perceptual ones on the centre `crop`) and compared; `cache` keeps baseline encodes and scores."""
    from .. import codec
    from ..engine import get_model

    m = get_model(model, device=device)
    qualities = list(qualities) if qualities else default_qualities(m.cfg.max_rate_position, m.cfg.num_rates)

    def codec_fn(image: Image.Image, quality: float) -> tuple[bytes, Image.Image, float, float]:
        t0 = time.perf_counter()
        data = codec.compress(image, model=m, quality=quality, effort=effort)
        t1 = time.perf_counter()
        out = codec.decompress(data, model=m, mode=mode)
        return data, out, t1 - t0, time.perf_counter() - t1

    codec_fn(Image.new("RGB", (64, 64)), qualities[0])  # warm-up: first-call costs are not the codec's
    result = evaluate(folder, codec_fn, qualities, baselines=tuple(baselines), out_dir=out_dir, progress=progress,
                      codec_name=m.identity + (f"+effort{effort}" if effort else ""), limit=limit, jobs=jobs,
                      metrics=metrics, crop=crop, cache=cache)
    if progress:
        print(format_markdown(result))
    return result
