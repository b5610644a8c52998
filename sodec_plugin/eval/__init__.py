"""Rate-distortion evaluation: metrics, Pillow baselines with rate matching, Bjontegaard deltas and reports.

Importing this package imports nothing of its modules until a name is used; torch is imported only by MS-SSIM and
the perceptual metrics, when called.
"""

from __future__ import annotations

import importlib
from typing import Any

# Where each public name lives. Loaded on first use (PEP 562): the CLI reads the defaults of
# baselines.py and scores.py at startup, and must not pay for report.py's scipy and matplotlib then.
_HOMES = {
    "CODECS": "baselines", "Codec": "baselines", "RateMatch": "baselines", "available_codecs": "baselines",
    "codec_unavailable": "baselines", "encode_decode": "baselines", "match_rate": "baselines",
    "bd_psnr": "bdrate", "bd_quality": "bdrate", "bd_rate": "bdrate",
    "evaluate": "report", "format_markdown": "report", "write_outputs": "report",
    "ms_ssim": "..metrics", "ms_ssim_db": "..metrics", "perceptual_metrics": "..metrics",
    "perceptual_status": "..metrics", "psnr": "..metrics",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(home if home.startswith("..") else f".{home}", __name__)
    return getattr(module, name)


__all__ = [
    "CODECS",
    "Codec",
    "RateMatch",
    "available_codecs",
    "bd_psnr",
    "bd_quality",
    "bd_rate",
    "codec_unavailable",
    "encode_decode",
    "evaluate",
    "format_markdown",
    "match_rate",
    "ms_ssim",
    "ms_ssim_db",
    "perceptual_metrics",
    "perceptual_status",
    "psnr",
    "write_outputs",
]
