"""Quality and decode options: one home, pure Python (Pillow's plugin and ComfyUI import it
without pulling in numpy or torch)."""

from __future__ import annotations

import math
import numbers
from typing import Any

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
