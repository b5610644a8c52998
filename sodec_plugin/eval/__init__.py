"""Rate-distortion evaluation: metrics, Pillow baselines with rate matching, Bjontegaard deltas and reports.

Importing this package does not import torch (only MS-SSIM and the optional perceptual metrics do, when called).
"""

from __future__ import annotations

from ..metrics import ms_ssim, ms_ssim_db, perceptual_metrics, perceptual_status, psnr
from .baselines import CODECS, Codec, RateMatch, available_codecs, codec_unavailable, encode_decode, match_rate
from .bdrate import bd_psnr, bd_quality, bd_rate
from .report import evaluate, format_markdown, write_outputs

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
