"""The logic behind the SODEC ComfyUI nodes, in plain Python so that it runs (and is tested) without ComfyUI.

ComfyUI's own modules (`folder_paths`, `comfy.model_management`, `comfy.utils`, `comfy.model_patcher`) are
used when the running process has already imported them, which ComfyUI always does before it loads node
packs; elsewhere simple stand-ins take their place. torch, numpy and the engine's networks are imported
inside the functions that need them, so that importing the node pack stays cheap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import tempfile
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sodec_plugin.config import LATENT_CELL
from sodec_plugin.container import EXTENSION as SDC_SUFFIX  # pure Python, like the rest of these imports
from sodec_plugin.engine import DTYPE_NAMES
from sodec_plugin.rates import DECODE_MODES, DEFAULT_QUALITY

log = logging.getLogger("sodec.comfyui")

CATEGORY = "SODEC"
MODEL_TYPE = "SODEC_MODEL"
BITSTREAM_TYPE = "SODEC_BITSTREAM"
MODEL_FOLDER = "sodec"  # ComfyUI's models/sodec
DEFAULT_CHOICE = "default"  # the bundled default model, whatever its release name
DECODE_PATHS = tuple(m for m in DECODE_MODES if m != "auto")  # a node picks the path itself
DEVICES = ("auto", "cpu")
DTYPES = ("auto", *DTYPE_NAMES)
DEFAULT_TILE_PX = 768
MIN_TILE_PX = 256  # 16 latent cells; the engine keeps its own minimum for the fidelity decoder
MAX_TILE_PX = 8192


# ---- ComfyUI's modules, where the process has them ---------------------------------------------------
def comfy_module(name: str) -> Any:
    """A ComfyUI module if ComfyUI has loaded it (never imported here: importing comfy.model_management
    outside ComfyUI would parse its command line and probe devices)."""
    return sys.modules.get(name)


def _folder_paths() -> Any:
    fp = comfy_module("folder_paths")
    return fp if fp is not None and hasattr(fp, "get_output_directory") else None


def _model_management() -> Any:
    mm = comfy_module("comfy.model_management")
    return mm if mm is not None and hasattr(mm, "get_torch_device") else None


def register_model_folder() -> None:
    """Make models/sodec a ComfyUI model folder (kept alongside paths from extra_model_paths.yaml)."""
    fp = _folder_paths()
    if fp is None:
        return
    path = os.path.join(fp.models_dir, MODEL_FOLDER)
    if MODEL_FOLDER in fp.folder_names_and_paths:
        paths, exts = fp.folder_names_and_paths[MODEL_FOLDER]
        if path not in paths:
            paths.append(path)
        fp.folder_names_and_paths[MODEL_FOLDER] = (paths, set(exts) | {".safetensors", ".json"})
    else:
        fp.folder_names_and_paths[MODEL_FOLDER] = ([path], {".safetensors", ".json"})
    os.makedirs(path, exist_ok=True)


def model_roots() -> list[Path]:
    fp = _folder_paths()
    if fp is None or MODEL_FOLDER not in fp.folder_names_and_paths:
        return []
    return [Path(p) for p in fp.get_folder_paths(MODEL_FOLDER)]


def input_directory() -> Path:
    fp = _folder_paths()
    return Path(fp.get_input_directory()) if fp is not None else Path.cwd() / "input"


def output_directory() -> Path:
    fp = _folder_paths()
    return Path(fp.get_output_directory()) if fp is not None else Path.cwd() / "output"


def temp_directory() -> Path:
    fp = _folder_paths()
    return Path(fp.get_temp_directory()) if fp is not None else Path(tempfile.gettempdir()) / "sodec-comfyui"


# ---- progress and interruption -----------------------------------------------------------------------
class RunHooks:
    """Progress and interruption between steps: ComfyUI's progress bar and interrupt flag when present,
    else the callables given (tests) or nothing."""

    def __init__(self, steps: int, progress: Callable[[float, int], None] | None = None,
                 interrupted: Callable[[], None] | None = None) -> None:
        self.steps = max(int(steps), 1)
        self._progress = progress
        self._interrupted = interrupted
        self._bar = None
        utils = comfy_module("comfy.utils")
        if progress is None and utils is not None and hasattr(utils, "ProgressBar"):
            self._bar = utils.ProgressBar(self.steps * 100)
        mm = _model_management()
        if interrupted is None and mm is not None:
            self._interrupted = mm.throw_exception_if_processing_interrupted

    def check(self) -> None:
        """Raise if the user pressed Cancel (ComfyUI's InterruptProcessingException)."""
        if self._interrupted is not None:
            self._interrupted()

    def progress(self, done: float) -> None:
        """`done` counts finished items (fractions for tiles within an item)."""
        done = min(max(done, 0.0), float(self.steps))
        if self._bar is not None:
            self._bar.update_absolute(int(round(done * 100)), self.steps * 100)
        if self._progress is not None:
            self._progress(done, self.steps)


# ---- models ------------------------------------------------------------------------------------------
def _is_model_folder(path: Path) -> bool:
    """A SODEC model folder: config.json (with SODEC's keys) and model.safetensors."""
    cfg = path / "config.json"
    if not (cfg.is_file() and (path / "model.safetensors").is_file()):
        return False
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "latent_channels" in data and "rate_lambdas" in data


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
        if here != root and _is_model_folder(here):
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
    roots = model_roots() if roots is None else roots
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
    folder = (cache_root or temp_directory() / "sodec_models") / f"{path.stem}-{key}"
    if not (folder / "config.json").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        link = folder / "model.safetensors"
        if not link.exists():
            try:
                link.symlink_to(path)
            except OSError:  # no symlinks (Windows without developer mode): copy
                import shutil

                shutil.copyfile(path, link)
        tmp = folder / f"config.json.{uuid.uuid4().hex}"
        tmp.write_text(json.dumps(json.loads(meta["sodec_config"]), indent=2, sort_keys=True) + "\n")
        tmp.replace(folder / "config.json")
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
    roots = model_roots() if roots is None else roots
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
    mm = _model_management()
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
    mm = _model_management()
    if mm is not None:
        if mm.should_use_fp16(device):
            return torch.float16
        if mm.should_use_bf16(device):
            return torch.bfloat16
    return torch.float32


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
    model_patcher = comfy_module("comfy.model_patcher")
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
        mm = _model_management()
        if self.patcher is not None and mm is not None:
            mm.load_models_gpu([self.patcher], force_full_load=True)
        if not _same_device(self.model.device, self.load_device) or self.patcher is not None:
            self.model.to_runtime(self.load_device, None)
        return self.model

    def describe(self) -> str:
        path = "diffusion and fidelity decoders" if self.has_diffusion else \
            "fidelity decoder only (no diffusion path: decodes use the fidelity decoder)"
        return f"{self.identity}: {path}; runs on {self.load_device}, {str(self.model.dtype).replace('torch.', '')}"


def load_model_handle(model: str = DEFAULT_CHOICE, hub_repo_id: str = "", revision: str = "", device: str = "auto",
                      dtype: str = "auto", roots: Sequence[Path] | None = None) -> SODECModelHandle:
    """SODECModelLoader: the shared engine model, kept where ComfyUI keeps idle models (the CPU unless
    --gpu-only / --highvram) and registered with its model management."""
    import sodec_plugin

    source = resolve_model_source(model, hub_repo_id, roots)
    load_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, load_device)
    mm = _model_management()
    offload_device = load_device
    if mm is not None and load_device.type != "cpu":
        offload_device = mm.unet_offload_device()
    engine_model = sodec_plugin.load_model(source, revision=(revision or "").strip() or None, device=offload_device,
                                           dtype=torch_dtype)
    patcher = _patcher_for(engine_model, load_device, offload_device) if mm is not None else None
    return SODECModelHandle(engine_model, load_device, offload_device, patcher)


# ---- bitstreams --------------------------------------------------------------------------------------
@dataclass(eq=False)
class SODECBitstream:
    """What travels on a SODEC_BITSTREAM wire: one .sdc file per batch item, plus, from the encoder, the
    images it coded (a reference, for SODECSave's preview)."""

    files: list[bytes]
    names: list[str] = field(default_factory=list)
    source: Any = None

    def __len__(self) -> int:
        return len(self.files)

    def headers(self) -> list[dict[str, Any]]:
        import sodec_plugin

        return [sodec_plugin.read_header(b) for b in self.files]

    def mean_bpp(self) -> float:
        heads = self.headers()
        return sum(h["bits_per_pixel"] for h in heads) / len(heads) if heads else 0.0

    def summary(self) -> list[str]:
        out = []
        for i, (data, h) in enumerate(zip(self.files, self.headers(), strict=True)):
            name = self.names[i] if i < len(self.names) else f"item {i}"
            out.append(f"{name}: {h['width']}x{h['height']} {h['mode']}, {len(data):,} bytes, "
                       f"{h['bits_per_pixel']:.4f} bpp")
        return out


def _alpha_from_mask(mask: Any, n: int, height: int, width: int) -> Any:
    """MASK (B, H, W) or (H, W), 1 = transparent (Load Image's convention) -> alpha (B, H, W, 1) in
    [0, 1], or None when the mask is all zeros (opaque: nothing to store). Load Image gives a 64x64
    zero mask for images without alpha, so only a non-zero mask must match the image size."""
    m = mask.detach().float().cpu()
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3:
        raise ValueError(f"MASK must be (batch, height, width), got shape {tuple(mask.shape)}")
    if not bool((m != 0).any()):
        return None
    if tuple(m.shape[1:]) != (height, width):
        raise ValueError(f"the mask is {m.shape[2]}x{m.shape[1]}, the images {width}x{height}")
    if m.shape[0] not in (1, n):
        raise ValueError(f"the mask batch ({m.shape[0]}) must be 1 or the image batch ({n})")
    return (1.0 - m.clamp(0, 1)).expand(n, -1, -1)[..., None]


def encode_images(handle: SODECModelHandle, images: Any, quality: int = DEFAULT_QUALITY,
                  hooks: RunHooks | None = None, mask: Any = None) -> SODECBitstream:
    """SODECEncode: IMAGE (B, H, W, C float in [0, 1]) to one .sdc file per batch item; an optional
    MASK becomes the stored alpha (kept exactly, as 8-bit)."""
    import sodec_plugin

    if getattr(images, "ndim", 0) != 4:
        raise ValueError(f"IMAGE must be a (batch, height, width, channels) tensor, got shape "
                         f"{tuple(getattr(images, 'shape', ()))}")
    n = int(images.shape[0])
    alpha = None if mask is None else _alpha_from_mask(mask, n, int(images.shape[1]), int(images.shape[2]))
    hooks = hooks or RunHooks(n)
    model = handle.ready()
    files = []
    for i in range(n):
        hooks.check()
        item = images[i].detach().float().cpu()
        if alpha is not None:
            item = _with_alpha(item, alpha[i])
        files.append(sodec_plugin.compress(item.numpy(), model=model, quality=quality))
        hooks.progress(i + 1)
    return SODECBitstream(files, [f"item {i}" for i in range(n)], images)


def _with_alpha(item: Any, alpha: Any) -> Any:
    """(H, W, C) image + (H, W, 1) alpha -> RGBA or LA (an existing alpha channel is replaced)."""
    import torch

    colour = item[..., :1] if item.shape[-1] in (1, 2) else item[..., :3]
    return torch.cat([colour, alpha], dim=-1)


def decode_bitstream(handle: SODECModelHandle, bitstream: SODECBitstream, decode_path: str = "diffusion",
                     guidance: float = 1.0, tile: int = DEFAULT_TILE_PX,
                     hooks: RunHooks | None = None) -> tuple[Any, Any, list[str]]:
    """SODECDecode: every file to IMAGE (B, H, W, 3) and MASK (B, H, W; 1 where transparent, ComfyUI's
    LoadImage convention), plus notes for the node. The batch must share one size."""
    import numpy as np
    import torch

    from sodec_plugin import codec, container

    if decode_path not in DECODE_PATHS:
        raise ValueError(f"decode path must be one of {DECODE_PATHS}, got {decode_path!r}")
    if not bitstream.files:
        raise ValueError("the bitstream holds no files")
    parsed = [container.parse(bytes(b)) for b in bitstream.files]
    sizes = {(f.width, f.height) for f in parsed}
    if len(sizes) > 1:
        raise ValueError(f"a batch decodes to one IMAGE, so its files must share one size; got {sorted(sizes)}")
    n = len(parsed)
    hooks = hooks or RunHooks(n)
    model = handle.ready()
    notes = []
    mode = decode_path
    if decode_path == "diffusion" and not model.has_diffusion:
        mode = "fidelity"
        notes.append(f"{model.identity} has no diffusion path (fidelity decoder only): decoded with the fidelity "
                     "decoder")
        log.warning("SODEC: %s", notes[-1])
    tile_cells = max(int(tile), MIN_TILE_PX) // LATENT_CELL
    images, masks = [], []
    for i, f in enumerate(parsed):
        hooks.check()

        def tile_done(done: int, total: int, i: int = i) -> None:
            hooks.check()
            hooks.progress(i + done / max(total, 1))

        im = codec.decode_file(f, model=model, mode=mode, guidance=float(guidance), tile=tile_cells,
                               progress=tile_done)
        images.append(torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0))
        if "A" in im.getbands():
            masks.append(1.0 - torch.from_numpy(np.asarray(im.getchannel("A"), dtype=np.float32) / 255.0))
        else:
            masks.append(torch.zeros((f.height, f.width), dtype=torch.float32))
        hooks.progress(i + 1)
    notes.insert(0, f"decoded {n} image(s) of {parsed[0].width}x{parsed[0].height} with the {mode} decoder")
    return torch.stack(images), torch.stack(masks), notes


# ---- files -------------------------------------------------------------------------------------------
def _inside(base: Path, path: Path) -> bool:
    base, path = base.resolve(), path.resolve()
    return path == base or base in path.parents


def _next_counter(folder: Path, stem: str) -> int:
    pattern = re.compile(re.escape(stem) + r"_(\d+)_")
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := pattern.match(p.name))] if folder.is_dir() else []
    return max(numbers, default=0) + 1


def _save_target(prefix: str, output_dir: Path, width: int, height: int) -> tuple[Path, str, int, str]:
    """(folder, file stem, first counter, subfolder) for files named like SaveImage's."""
    fp = _folder_paths()
    if fp is not None:
        folder, stem, counter, subfolder, _ = fp.get_save_image_path(prefix, str(output_dir), width, height)
        return Path(folder), stem, counter, subfolder
    prefix = prefix.replace("%width%", str(width)).replace("%height%", str(height))
    sub, stem = os.path.split(os.path.normpath(prefix))
    folder = output_dir / sub
    if not _inside(output_dir, folder):
        raise ValueError(f"filename_prefix {prefix!r} points outside the output folder")
    folder.mkdir(parents=True, exist_ok=True)
    return folder, stem, _next_counter(folder, stem), sub


def save_bitstream(bitstream: SODECBitstream, filename_prefix: str = "sodec/SODEC",
                   output_dir: Path | None = None) -> list[dict[str, Any]]:
    """SODECSave: write each file as <prefix>_<counter>_.sdc; returns what was written."""
    if not bitstream.files:
        raise ValueError("the bitstream holds no files")
    output_dir = Path(output_dir or output_directory())
    heads = bitstream.headers()
    folder, stem, counter, subfolder = _save_target(filename_prefix, output_dir, heads[0]["width"],
                                                    heads[0]["height"])
    saved = []
    for i, (data, h) in enumerate(zip(bitstream.files, heads, strict=True)):
        name = f"{stem.replace('%batch_num%', str(i))}_{counter + i:05}_{SDC_SUFFIX}"
        (folder / name).write_bytes(data)
        saved.append({"filename": name, "subfolder": subfolder, "type": "output", "width": h["width"],
                      "height": h["height"], "mode": h["mode"], "bytes": len(data),
                      "bpp": round(h["bits_per_pixel"], 6)})
    return saved


def save_previews(images: Any, temp_dir: Path | None = None) -> list[dict[str, str]]:
    """PNG previews in ComfyUI's temp folder (what its PreviewImage does), for the node to show."""
    import numpy as np
    from PIL import Image

    temp_dir = Path(temp_dir or temp_directory())
    temp_dir.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    out = []
    for i in range(int(images.shape[0])):
        arr = np.clip(images[i].detach().float().cpu().numpy() * 255.0 + 0.5, 0, 255).astype(np.uint8)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        name = f"SODEC_preview_{tag}_{i:05}_.png"
        Image.fromarray(arr).save(temp_dir / name, compress_level=1)
        out.append({"filename": name, "subfolder": "", "type": "temp"})
    return out


def save_node(bitstream: SODECBitstream, filename_prefix: str = "sodec/SODEC", preview: Any = None,
              output_dir: Path | None = None, temp_dir: Path | None = None) -> dict[str, Any]:
    """SODECSave's UI: the saved files, a preview (the `preview` input, else the encoder's images) and a
    line per file with its size and bits per pixel."""
    saved = save_bitstream(bitstream, filename_prefix, output_dir)
    shown = preview if preview is not None else bitstream.source
    ui: dict[str, Any] = {"sdc": saved,
                          "text": [f"{s['filename']}: {s['width']}x{s['height']}, {s['bytes']:,} bytes, "
                                   f"{s['bpp']:.4f} bpp" for s in saved]}
    if shown is not None:
        ui["images"] = save_previews(shown, temp_dir)
    return ui


OUTPUT_TAG = " [output]"  # ComfyUI's annotation for files in the output folder (as LoadImageOutput)


def _sdc_under(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend((Path(dirpath) / f).relative_to(root).as_posix() for f in filenames
                     if f.lower().endswith(SDC_SUFFIX))
    return sorted(found)


def list_sdc_files(input_dir: Path | None = None, output_dir: Path | None = None) -> list[str]:
    """.sdc files in the input folder, then those in the output folder (what SODEC Save wrote)
    tagged " [output]"; '/'-separated, subfolders included."""
    inputs = _sdc_under(Path(input_dir or input_directory()))
    outputs = _sdc_under(Path(output_dir or output_directory()))
    return inputs + [name + OUTPUT_TAG for name in outputs]


def sdc_path(name: str, input_dir: Path | None = None, output_dir: Path | None = None) -> Path:
    """The file a SODEC Load choice names: in the input folder, or the output folder when tagged."""
    if name.endswith(OUTPUT_TAG):
        name, root, where = name[:-len(OUTPUT_TAG)], Path(output_dir or output_directory()), "output"
    else:
        root, where = Path(input_dir or input_directory()), "input"
    path = root / name
    if not _inside(root, path):
        raise ValueError(f"{name!r} is outside the {where} folder")
    if not path.is_file():
        raise FileNotFoundError(f"no .sdc file {name!r} in the {where} folder")
    return path


def load_bitstream(name: str, input_dir: Path | None = None) -> SODECBitstream:
    """SODECLoad: an .sdc file from the input (or tagged output) folder, checked (magic, sizes, CRC)
    before it goes on."""
    from sodec_plugin import container

    data = sdc_path(name, input_dir).read_bytes()
    container.parse(data)
    return SODECBitstream([data], [Path(name.removesuffix(OUTPUT_TAG)).name])


def file_fingerprint(name: str, input_dir: Path | None = None) -> str:
    """Changes when the file does, so ComfyUI reruns SODECLoad instead of using its cache."""
    try:
        return hashlib.sha256(sdc_path(name, input_dir).read_bytes()).hexdigest()
    except (OSError, ValueError):
        return ""
