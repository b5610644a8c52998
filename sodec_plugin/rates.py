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
# of it, then full size from `full` up, where every quality codes as it did before resampling. A
# ladder: (shorter side at least, rungs as (factor, first position, last position), full), positions
# in fractions of the model's. An image takes the first ladder its shorter side reaches (smaller ones
# code every quality at full size). Every join lands on more bytes and a better picture, so quality
# stays monotone; the first rung starts at the lowest position.
LADDERS = (
    (640, ((4, 0.0, 0.8125), (2, 0.5625, 0.875)), 0.625),
    (320, ((2, 0.0, 0.8125),), 0.5),
)
# Smooth photos code the first full-size qualities of their ladder at 2/3 of the size instead: that
# gains CVVDP and SSIMULACRA2 there on smooth photos and loses on detailed ones, where the 2/3-size
# round trip alone (Lanczos down and up, no coding) already costs much: a photo under DETAIL_FLOOR_DB
# of that round trip keeps full size (docs/results.md). (shorter side at least, factor, first and
# last position, full size from), positions in fractions of the model's; the qualities from the
# ladder's full-size start to that of `full size from` spread over the positions.
SMOOTH_RUNG = (640, 1.5, 0.75, 0.875, 95 / 128)
DETAIL_FLOOR_DB = 38.0
RESAMPLING_CHOICES = ("auto", *sorted(RESAMPLE_FACTORS))


def size_fraction(factor: float) -> str:
    """The coded size as a fraction of the image's: "1/2" at factor 2, "2/3" at factor 1.5."""
    num, den = float(factor).as_integer_ratio()
    return f"{den}/{num}"


def describe_ladders() -> str:
    """The automatic choice in words, for help texts."""
    least, factor, _, _, smooth_full = SMOOTH_RUNG
    return "; ".join(f"below quality {1 + 99 * full:g} from {side} px on the shorter side at "
                     + " then ".join(size_fraction(f) for f, _, _ in rungs) + " size" for side, rungs, full in LADDERS
                     ) + (f"; smooth photos from {least} px at {size_fraction(factor)} size from there to quality "
                          f"{1 + 99 * smooth_full:.4g}")


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


def _smooth_rung(max_position: int, width: int, height: int, rungs: list[tuple[float, int, int]],
                 start: float) -> tuple[float, int, int, float, float] | None:
    """(factor, first position, last position, first quality, quality of full size) of this image's
    smooth-photo rung (SMOOTH_RUNG), or None; `rungs` and `start` are the image's _ladder()."""
    least, factor, lo, hi, full = SMOOTH_RUNG
    if not rungs or min(width, height) < least:
        return None
    return (factor, round(lo * max_position), round(hi * max_position), start,
            position_to_quality_exact(round(full * max_position), max_position))


def coding_point(quality: Any, max_position: int, *, width: int, height: int, resampling: Any = None,
                 round_trip_db: Callable[[float], float] | None = None) -> tuple[float, int]:
    """(resampling factor, rate position) a quality codes at. A forced factor keeps the plain mapping
    (quality_to_position), and so does the automatic ladder from its full-size quality up, but for
    the smooth-photo rung; below that the image's rungs' positions are spread evenly over the
    qualities, one rung after another. `round_trip_db(factor)`: the PSNR of the image scaled down by
    factor and back up, asked for only at the smooth-photo rung's qualities (None: a smooth photo)."""
    factor = check_resampling(resampling)
    position = quality_to_position(quality, max_position)
    rungs, count, full_quality = _ladder(max_position, width, height)
    if factor is not None or not rungs:
        return factor or 1, position
    q = float(quality)
    if q >= full_quality:
        smooth = _smooth_rung(max_position, width, height, rungs, full_quality)
        if smooth is None or q >= smooth[4]:
            return 1, position
        f, lo, hi, start, end = smooth
        if round_trip_db is not None and round_trip_db(f) < DETAIL_FLOOR_DB:
            return 1, position
        return f, lo + min(hi - lo, int((q - start) / (end - start) * (hi - lo + 1)))
    index = min(count - 1, int((q - 1.0) / (full_quality - 1.0) * count))
    for f, lo, hi in rungs:
        if index <= hi - lo:
            return f, lo + index
        index -= hi - lo + 1
    raise AssertionError("the rungs cover every quality below full size")


def point_quality(factor: float, position: int, max_position: int, *, width: int, height: int) -> float:
    """The quality that codes at (factor, position) on this image's ladder (coding_point's inverse, to
    one position); a point off the ladder (a forced factor) reads as position_to_quality."""
    rungs, count, full_quality = _ladder(max_position, width, height)
    smooth = _smooth_rung(max_position, width, height, rungs, full_quality)
    if smooth is not None and factor == smooth[0] and smooth[1] <= position <= smooth[2]:
        _, lo, hi, start, end = smooth
        return round(start + (position - lo + 0.5) / (hi - lo + 1) * (end - start), 2)
    index = 0
    for f, lo, hi in rungs:
        if f == factor and lo <= position <= hi:
            return round(1.0 + (index + position - lo + 0.5) / count * (full_quality - 1.0), 2)
        index += hi - lo + 1
    starts = [q for q in [full_quality] + ([smooth[4]] if smooth else [])
              if quality_to_position(q, max_position) <= position] if factor == 1 and rungs else []
    if starts:
        # the plain mapping rounds to whole qualities: not below the full-size start that codes it
        return max(position_to_quality(position, max_position), math.ceil(max(starts) * 100) / 100)
    return position_to_quality(position, max_position)
