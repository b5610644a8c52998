"""SODEC: a learned image codec that decodes with a one-step diffusion model.

Public API (imports of torch and diffusers happen on first use, not at import):
    load_model(name_or_path=None, *, revision=None, device=None, dtype=None)
    compress(image, *, model=None, quality=None, effort=0, resampling="auto") -> bytes
    decompress(data, *, model=None, device=None, mode="auto", guidance=None) -> PIL.Image
    read_header(data) -> dict  (pure Python)
"""

from __future__ import annotations

from typing import Any

from .container import FormatError

__version__ = "0.1.0"
__all__ = ["FormatError", "compress", "decompress", "load_model", "read_header", "__version__"]


def load_model(name_or_path: Any = None, *, revision: str | None = None, device: Any = None, dtype: Any = None,
               local_files_only: bool | None = None) -> Any:
    """The shared SODECModel for a bundled name, a local folder or a Hub repo id (None: the bundled
    default). One instance per (weights, device, dtype) in the process."""
    from .engine import get_model

    return get_model(name_or_path, revision=revision, device=device, dtype=dtype, local_files_only=local_files_only)


def compress(image: Any, *, model: Any = None, quality: int | float | None = None, **kwargs: Any) -> bytes:
    from .codec import compress as _compress

    return _compress(image, model=model, quality=quality, **kwargs)


def decompress(data: Any, *, model: Any = None, device: Any = None, mode: str = "auto", guidance: float | None = None,
               **kwargs: Any) -> Any:
    from .codec import decompress as _decompress

    return _decompress(data, model=model, device=device, mode=mode, guidance=guidance, **kwargs)


def read_header(data: Any) -> dict[str, Any]:
    from .codec import read_header as _read_header

    return _read_header(data)
