"""Quality and decode options: one home, pure Python (Pillow's plugin and ComfyUI import it
without pulling in numpy or torch)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

from .container import RESAMPLE_FACTORS

DEFAULT_QUALITY = 75
DECODE_MODES = ("auto", "diffusion", "fidelity")
# Encoder effort: 0 codes the analysis transform's latents; 1..MAX_EFFORT search for better ones
# (models/refinement.py), slower to encode, the same decoder and format.
DEFAULT_EFFORT = 0
MAX_EFFORT = 9


def check_quality(quality: Any) -> None:
    if (isinstance(quality, bool) or not isinstance(quality, numbers.Real) or math.isnan(quality)
            or not 1 <= quality <= 100):
        raise ValueError(f"quality must be a number from 1 to 100, got {quality!r}")


def check_effort(effort: Any) -> None:
    if isinstance(effort, bool) or not isinstance(effort, numbers.Integral) or not 0 <= effort <= MAX_EFFORT:
        raise ValueError(f"effort must be an integer from 0 to {MAX_EFFORT}, got {effort!r}")


def quality_to_position(quality: Any, max_position: int) -> int:
    """quality 1..100 maps linearly onto the model's rate points (1 = lowest rate point,
    100 = highest); between points the gains are interpolated in 1/rate_substeps steps."""
    check_quality(quality)
    return int(round((float(quality) - 1.0) / 99.0 * max_position))


def position_to_quality(position: int, max_position: int) -> int:
    """The quality whose rate position this is."""
    return int(round(1 + 99.0 * position / max_position)) if max_position else 100


# ---- resampling: code the image smaller where that looks better at the same size -----------------
# A photo coded at half or a quarter of its size and scaled back up (Lanczos) beats the same model
# at full size at low rates: on photos of 1.5-6.5 MP at 0.016-0.04 bpp by 0.6-3.9 dB PSNR and 10-35
# SSIMULACRA2 points at half size, and by more at a quarter below 0.01 bpp; on photos of 0.15-0.4 MP
# at half size up to about 0.08 bpp (docs/results.md, resampling). So at low qualities the encoder
# climbs the rungs of its image's ladder: the model's positions at a quarter of the size, then at half
# of it, then (large photos) at 2/3 of it, then full size from `full` up, where every quality codes as
# it did before resampling (the default quality 75 among them). A ladder: (shorter side at least,
# rungs as (factor, first position, last position), full), positions in fractions of the model's. An
# image takes the first ladder its shorter side reaches (smaller ones code every quality at full
# size). Every join lands on more bytes and a better picture, so quality stays monotone; the first
# rung starts at the lowest position.
LADDERS = (
    (640, ((4, 0.0, 0.8125), (2, 0.5625, 0.8125), (1.5, 0.6875, 0.875)), 95 / 128),
    (320, ((2, 0.0, 0.8125),), 0.5),
)
# The 2/3-size rung pays on smooth photos and loses on detailed ones, where the 2/3-size round trip
# alone (Lanczos down and up, no coding) already costs much: below this PSNR of that round trip the
# rung codes at full size instead, at as many positions, ending just below `full` (docs/results.md).
DETAIL_FACTOR = 1.5
DETAIL_FLOOR_DB = 38.0
RESAMPLING_CHOICES = ("auto", *sorted(RESAMPLE_FACTORS))


def size_fraction(factor: float) -> str:
    """The coded size as a fraction of the image's: "1/2" at factor 2, "2/3" at factor 1.5."""
    num, den = float(factor).as_integer_ratio()
    return f"{den}/{num}"


def describe_ladders() -> str:
    """The automatic choice in words, for help texts."""
    return "; ".join(f"below quality {1 + 99 * full:g} from {side} px on the shorter side at "
                     + " then ".join(size_fraction(f) for f, _, _ in rungs) + " size" for side, rungs, full in LADDERS)


def resampling_from_name(name: str) -> float | str:
    """A resampling choice from its name ("auto", "1", "2", ...): what command lines and combo boxes hold."""
    for choice in RESAMPLING_CHOICES:
        if str(name) == str(choice):
            return choice
    raise ValueError(f"resampling must be one of {', '.join(map(str, RESAMPLING_CHOICES))}, got {name!r}")


def resampling_note(factor: float) -> str:
    """", coded at 1/2 size" for a file whose streams code a smaller image; "" for full size."""
    return f", coded at {size_fraction(factor)} size" if factor != 1 else ""


def check_resampling(resampling: Any) -> float | None:
    """None or "auto": the ladder; 1, 1.5, 2, 4 or 8: that factor at every quality."""
    if resampling is None or resampling == "auto":
        return None
    if isinstance(resampling, bool) or resampling not in RESAMPLING_CHOICES[1:]:
        raise ValueError(f"resampling must be 'auto' or one of {RESAMPLING_CHOICES[1:]}, got {resampling!r}")
    return int(resampling) if resampling == int(resampling) else float(resampling)


def _ladder(max_position: int, width: int, height: int) -> tuple[list[tuple[float, int, int]], int, float]:
    """This image's rungs below full size as (factor, first position, last position), their number
    of positions, and the quality where full size starts; no rungs for a model of one rate point
    (it has one quality) or an image under every ladder's size."""
    side = min(width, height)
    for least, rungs, full in LADDERS:
        if side >= least and max_position:
            points = [(f, 0 if n == 0 else round(lo * max_position), round(hi * max_position))
                      for n, (f, lo, hi) in enumerate(rungs)]
            return points, sum(hi - lo + 1 for _, lo, hi in points), position_to_quality_exact(
                round(full * max_position), max_position)
    return [], 0, 0.0


def position_to_quality_exact(position: int, max_position: int) -> float:
    """The quality that lands exactly on a rate position (quality_to_position's inverse, unrounded)."""
    return 1.0 + 99.0 * position / max_position


def coding_point(quality: Any, max_position: int, *, width: int, height: int, resampling: Any = None,
                 round_trip_db: Callable[[float], float] | None = None) -> tuple[float, int]:
    """(resampling factor, rate position) a quality codes at. A forced factor keeps the plain mapping
    (quality_to_position), and so does the automatic ladder from its full-size quality up; below
    that the image's rungs' positions are spread evenly over the qualities, one rung after another.
    `round_trip_db(factor)`: the PSNR of the image scaled down by factor and back up, asked for only
    on the 2/3-size rung (a photo under DETAIL_FLOOR_DB codes that rung at full size; None: smooth)."""
    factor = check_resampling(resampling)
    position = quality_to_position(quality, max_position)
    rungs, count, full_quality = _ladder(max_position, width, height)
    if factor is not None or not rungs or float(quality) >= full_quality:
        return factor or 1, position
    index = min(count - 1, int((float(quality) - 1.0) / (full_quality - 1.0) * count))
    for f, lo, hi in rungs:
        if index <= hi - lo:
            if f == DETAIL_FACTOR and round_trip_db is not None and round_trip_db(f) < DETAIL_FLOOR_DB:
                return 1, _full_size_stand_in(max_position, width, height, lo + index)
            return f, lo + index
        index -= hi - lo + 1
    raise AssertionError("the rungs cover every quality below full size")


def _full_size_stand_in(max_position: int, width: int, height: int, position: int) -> int:
    """The full-size position a detailed photo codes instead of 2/3-size `position`: as many
    positions as the rung has, ending just below the ladder's full-size start."""
    rungs, _, full_quality = _ladder(max_position, width, height)
    hi = next(h for f, _, h in rungs if f == DETAIL_FACTOR)
    return quality_to_position(full_quality, max_position) - 1 - (hi - position)


def point_quality(factor: float, position: int, max_position: int, *, width: int, height: int) -> float:
    """The quality that codes at (factor, position) on this image's ladder (coding_point's inverse, to
    one position; full size at the 2/3-size rung's stand-in positions reads as that rung, as a
    detailed photo codes it); a point off the ladder (a forced factor) reads as position_to_quality."""
    rungs, count, full_quality = _ladder(max_position, width, height)
    index = 0
    for f, lo, hi in rungs:
        if f == DETAIL_FACTOR and factor == 1:  # a detailed photo's full-size stand-in for this rung
            stand_in = position - _full_size_stand_in(max_position, width, height, lo) + lo
            if lo <= stand_in <= hi:
                position, factor = stand_in, f
        if f == factor and lo <= position <= hi:
            return round(1.0 + (index + position - lo + 0.5) / count * (full_quality - 1.0), 2)
        index += hi - lo + 1
    if factor == 1 and rungs and position >= quality_to_position(full_quality, max_position):
        # the plain mapping rounds to whole qualities: not below the ladder's full-size start
        return max(position_to_quality(position, max_position), math.ceil(full_quality * 100) / 100)
    return position_to_quality(position, max_position)
