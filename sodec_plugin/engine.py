"""The shared model cache: one instance per (model weights, device, dtype), safe across threads.

Pillow, ComfyUI and the CLI all call `get_model`; a model named from several places (a bundled
name, its folder, a Hub id) resolves to one folder and one digest, so it is loaded once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from .models.sodec import SODECModel

# Models kept for reuse, least recently used first; beyond this many the oldest is dropped from the
# cache (a caller still holding it keeps it), so a long-running process (a ComfyUI server switching
# between multi-GB diffusion models) does not keep every model it ever loaded.
MAX_CACHED_MODELS = 4
_lock = threading.Lock()
_by_key: OrderedDict[tuple[str, str, str], SODECModel] = OrderedDict()
_key_locks: dict[tuple[str, str, str], threading.Lock] = {}
_load_count = 0


# Short dtype names the doors accept (CLI, Pillow options, ComfyUI's loader) -> torch attribute names.
DTYPE_NAMES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def norm_device(device: Any) -> str:
    import torch

    if device is None:
        return "cpu"
    if str(device) == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(torch.device(device))


def norm_dtype(dtype: Any) -> torch.dtype:
    """A torch dtype from None (float32), a short name (fp32, fp16, bf16), a torch name or a dtype."""
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        name = DTYPE_NAMES.get(dtype, dtype)
        value = getattr(torch, name, None)
        if not isinstance(value, torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}")
        return value
    return dtype


def get_model(name_or_path: Any = None, *, revision: str | None = None, device: Any = None, dtype: Any = None,
              local_files_only: bool | None = None) -> SODECModel:
    """The shared instance for a model name, folder, repo id or an already loaded model."""
    from .models.sodec import SODECModel

    if isinstance(name_or_path, SODECModel):
        return name_or_path
    from .hub import resolve_folder

    global _load_count
    folder = resolve_folder(name_or_path, revision=revision, local_files_only=local_files_only)
    dev, dt = norm_device(device), norm_dtype(dtype)
    key = (str(Path(folder).resolve()), dev, str(dt))
    with _lock:
        if key in _by_key:
            _by_key.move_to_end(key)
            return _by_key[key]
        klock = _key_locks.setdefault(key, threading.Lock())
    with klock:
        with _lock:
            if key in _by_key:
                return _by_key[key]
        base_kwargs = {} if local_files_only is None else {"local_files_only": local_files_only}
        model = SODECModel.from_folder(folder, device=dev, dtype=dt, base_kwargs=base_kwargs, optimize=True)
        with _lock:
            for (_, d2, t2), other in _by_key.items():  # same weights reached by another name
                if other.digest == model.digest and (d2, t2) == (dev, str(dt)):
                    model = other
                    break
            else:
                _load_count += 1
            _by_key[key] = model
            while len(_by_key) > MAX_CACHED_MODELS:
                old_key, _ = _by_key.popitem(last=False)
                _key_locks.pop(old_key, None)
        return model


def loaded_model_for(digest_prefix: str) -> SODECModel | None:
    """A model already loaded in this process whose weights digest starts with the prefix, so
    files of a non-bundled model open anywhere once any door (ComfyUI, CLI) has loaded it."""
    with _lock:
        return next((m for m in _by_key.values() if m.digest.startswith(digest_prefix)), None)


def load_count() -> int:
    """How many models this process has loaded (tests check that sharing works)."""
    return _load_count


def clear() -> None:
    """Forget every cached model (frees memory once no caller holds them)."""
    with _lock:
        _by_key.clear()
        _key_locks.clear()
