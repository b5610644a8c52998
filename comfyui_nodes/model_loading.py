"""SODECModelLoader's work: which models there are (the bundled default, the releases, models/sodec), what a
choice names, where and in which dtype a model runs, and the SODEC_MODEL handle, loaded and offloaded through
ComfyUI's model management (one ModelPatcher per model and device) when the process has it. torch is
imported inside the functions that need it.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sodec_plugin.config import CONFIG_NAME, WEIGHTS_NAME
from sodec_plugin.engine import DTYPE_NAMES  # pure Python at import
from sodec_plugin.hub import is_model_folder

from . import paths

MODEL_TYPE = "SODEC_MODEL"
DEFAULT_CHOICE = "default"  # the bundled default model, whatever its release name
DEVICES = ("auto", "cpu")
DTYPES = ("auto", *DTYPE_NAMES)


def model_management() -> Any:
    """ComfyUI's comfy.model_management, or None outside ComfyUI."""
    mm = paths.comfy_module("comfy.model_management")
    return mm if mm is not None and hasattr(mm, "get_torch_device") else None


# ---- which models there are, and what a choice names -------------------------------------------------
def safetensors_metadata(path: Path) -> dict[str, str]:
    """The text metadata of a .safetensors file (header only: no tensors are read, no torch)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            return dict(f.metadata() or {})
    except (OSError, ValueError, SafetensorError):
        return {}


def scan_model_dir(root: Path) -> list[str]:
    """Model folders and lone SODEC .safetensors files under `root`, as '/'-separated relative paths. A
    model folder's inside (its own weights, a base model stored with it) is not listed again."""
    found: list[str] = []
    if not root.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(dirpath)
        dirnames.sort()
        if here != root and is_model_folder(here):
            found.append(here.relative_to(root).as_posix())
            dirnames[:] = []
            continue
        found.extend((here / f).relative_to(root).as_posix() for f in sorted(filenames)
                     if f.endswith(".safetensors") and "sodec_config" in safetensors_metadata(here / f))
    return sorted(found)


def release_names() -> list[str]:
    """Every released model, newest first: the bundled default loads at once, the others come from
    their Hub home on first use, so that a workflow saved with any of them still validates."""
    from sodec_plugin.releases import RELEASES

    return [r.name for r in reversed(RELEASES)]


def model_choices(roots: Sequence[Path] | None = None) -> list[str]:
    """The loader's list: the bundled default, each release, then models/sodec."""
    roots = paths.model_roots() if roots is None else roots
    choices = [DEFAULT_CHOICE, *release_names()]
    for root in roots:
        choices.extend(c for c in scan_model_dir(Path(root)) if c not in choices)
    return choices


def folder_for_weights_file(path: Path, cache_root: Path | None = None) -> Path:
    """A model folder for a lone model.safetensors whose metadata carries its config (save_pretrained
    writes it there): config.json is written next to a link to the weights, in a cache folder."""
    path = Path(path).resolve()
    meta = safetensors_metadata(path)
    if "sodec_config" not in meta:
        raise ValueError(f"{path.name} is not a SODEC model: its metadata has no sodec_config (a SODEC model is a "
                         "folder with config.json and model.safetensors, or a model.safetensors it wrote)")
    stat = path.stat()
    key = hashlib.sha256(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    folder = (cache_root or paths.temp_directory() / "sodec_models") / f"{path.stem}-{key}"
    if not (folder / CONFIG_NAME).is_file():
        folder.mkdir(parents=True, exist_ok=True)
        link = folder / WEIGHTS_NAME
        if not link.exists():
            try:
                link.symlink_to(path)
            except OSError:  # no symlinks (Windows without developer mode): copy
                import shutil

                shutil.copyfile(path, link)
        tmp = folder / f"{CONFIG_NAME}.{uuid.uuid4().hex}"
        tmp.write_text(json.dumps(json.loads(meta["sodec_config"]), indent=2, sort_keys=True) + "\n")
        tmp.replace(folder / CONFIG_NAME)
    return folder


def resolve_model_source(choice: str, hub_repo_id: str = "", roots: Sequence[Path] | None = None) -> Any:
    """What to hand to sodec_plugin.load_model for the loader's inputs (None: the bundled default)."""
    repo = (hub_repo_id or "").strip()
    if repo:
        return repo
    if choice in ("", DEFAULT_CHOICE, None):
        return None
    if choice in release_names():
        return choice
    roots = paths.model_roots() if roots is None else roots
    for root in roots:
        p = Path(root) / choice
        if p.is_dir():
            return p
        if p.is_file():
            return folder_for_weights_file(p)
    p = Path(choice).expanduser()
    if p.is_dir():
        return p
    if p.is_file():
        return folder_for_weights_file(p)
    where = ", ".join(str(r) for r in roots) or "no models/sodec folder"
    raise FileNotFoundError(f"SODEC model {choice!r} not found (looked in {where}); refresh the node's list")


# ---- where a model runs ------------------------------------------------------------------------------
def _same_device(a: Any, b: Any) -> bool:
    import torch

    a, b = torch.device(a), torch.device(b)
    if a.type != b.type:
        return False
    if a.type == "cpu":
        return True
    cur = torch.cuda.current_device() if a.type == "cuda" and torch.cuda.is_available() else 0
    return (a.index if a.index is not None else cur) == (b.index if b.index is not None else cur)


def resolve_device(device: str) -> Any:
    """'auto': ComfyUI's device (its --cpu, --gpu-only and friends apply), else CUDA when present."""
    import torch

    if device == "cpu":
        return torch.device("cpu")
    if device != "auto":
        return torch.device(device)
    mm = model_management()
    if mm is not None:
        return mm.get_torch_device()
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_dtype(dtype: str, device: Any) -> Any:
    """'auto': float32 on the CPU; on a GPU half precision where ComfyUI says the device handles it."""
    import torch

    from sodec_plugin.engine import norm_dtype

    if dtype in DTYPE_NAMES:
        return norm_dtype(dtype)
    if dtype != "auto":
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if torch.device(device).type == "cpu":
        return torch.float32
    mm = model_management()
    if mm is not None:
        if mm.should_use_fp16(device):
            return torch.float16
        if mm.should_use_bf16(device):
            return torch.bfloat16
    return torch.float32


# ---- the handle, under ComfyUI's model management ----------------------------------------------------
# Weak: a patcher lives as long as a handle (a cached loader output) or ComfyUI's model management
# holds it, so models the graph no longer uses can be freed; while it lives its model does too, so
# the id() in the key cannot be reused by another model.
_PATCHERS: weakref.WeakValueDictionary[tuple[int, str], Any] = weakref.WeakValueDictionary()


def _patcher_for(model: Any, load_device: Any, offload_device: Any) -> Any:
    """One ComfyUI ModelPatcher per (engine model, device), so ComfyUI can load, offload and free it like
    its own models. The engine model hangs under a plain holder module: ModelPatcher writes `.device`."""
    key = (id(model), str(load_device))
    known = _PATCHERS.get(key)
    if known is not None:
        return known
    model_patcher = paths.comfy_module("comfy.model_patcher")
    if model_patcher is None:
        import importlib

        model_patcher = importlib.import_module("comfy.model_patcher")
    import torch

    class SODECHolder(torch.nn.Module):
        def __init__(self, sodec: Any) -> None:
            super().__init__()
            self.sodec = sodec
            self.device = offload_device

    patcher = model_patcher.ModelPatcher(SODECHolder(model), load_device=load_device, offload_device=offload_device)
    _PATCHERS[key] = patcher
    return patcher


@dataclass(eq=False)
class SODECModelHandle:
    """What travels on a SODEC_MODEL wire: the shared engine model and where it runs."""

    model: Any
    load_device: Any
    offload_device: Any
    patcher: Any = None

    @property
    def has_diffusion(self) -> bool:
        return bool(self.model.has_diffusion)

    @property
    def identity(self) -> str:
        return str(self.model.identity)

    def ready(self) -> Any:
        """The model on its load device: through ComfyUI's model management (which frees room on the GPU
        first, and may offload it again later) when present. Coding tables stay on the CPU."""
        mm = model_management()
        if self.patcher is not None and mm is not None:
            mm.load_models_gpu([self.patcher], force_full_load=True)
        if not _same_device(self.model.device, self.load_device) or self.patcher is not None:
            self.model.to_runtime(self.load_device, None)
        return self.model

    def describe(self) -> str:
        path = "diffusion and fidelity decoders" if self.has_diffusion else \
            "fidelity decoder only (no diffusion path: decodes use the fidelity decoder)"
        if self.model.fidelity_decoder.reads_guidance:
            path += "; its fidelity decoder reads the guidance (0 best-looking, 1 closest to the original)"
        return f"{self.identity}: {path}; runs on {self.load_device}, {str(self.model.dtype).replace('torch.', '')}"


def load_model_handle(model: str = DEFAULT_CHOICE, hub_repo_id: str = "", revision: str = "", device: str = "auto",
                      dtype: str = "auto", roots: Sequence[Path] | None = None) -> SODECModelHandle:
    """SODECModelLoader: the shared engine model, kept where ComfyUI keeps idle models (the CPU unless
    --gpu-only / --highvram) and registered with its model management."""
    import sodec_plugin

    source = resolve_model_source(model, hub_repo_id, roots)
    load_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, load_device)
    mm = model_management()
    offload_device = load_device
    if mm is not None and load_device.type != "cpu":
        offload_device = mm.unet_offload_device()
    engine_model = sodec_plugin.load_model(source, revision=(revision or "").strip() or None, device=offload_device,
                                           dtype=torch_dtype)
    patcher = _patcher_for(engine_model, load_device, offload_device) if mm is not None else None
    return SODECModelHandle(engine_model, load_device, offload_device, patcher)
