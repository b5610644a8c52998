"""Distortion metrics on uint8 RGB arrays (H x W x 3).

The scored metrics (`METRICS`): PSNR and MS-SSIM, which papers report, and two perceptual metrics that need no
neural weights, which codec engineers compare with: ColorVideoVDP (the `cvvdp` package, JOD scale, with a display
model) and SSIMULACRA2 (the `ssimulacra2` package, a Python port of libjxl's metric). All four are "higher is
better". LPIPS and DISTS are optional extras: they are offered only when their package is importable AND the
pretrained backbone weights already sit in the local torch hub cache, because this code must never trigger a
download (evaluations run offline). Torch is imported inside functions only.
"""

from __future__ import annotations

import importlib.util
import io
import math
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

# pytorch_msssim downsamples 4 times with an 11-px window: it asserts min(H, W) > (11 - 1) * 2**4 = 160.
MS_SSIM_MIN_SIDE = 161

# File names torchvision gives these ImageNet checkpoints in <torch hub dir>/checkpoints (fixed by their URLs).
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
VGG16_FILE = "vgg16-397923af.pth"
PIQ_DISTS_FILE = "dists_weights.pt"

PerceptualFn = Callable[[np.ndarray, np.ndarray], float]


def _check_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected H x W x 3 RGB arrays, got {a.shape}")
    return a, b


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB on the 0..255 scale over all pixels and channels; inf for identical images."""
    a, b = _check_pair(a, b)
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(255.0**2 / mse)


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM (pytorch_msssim, data_range=255, default 5 scales); nan when the image is too small for 5 scales,
    so that small crops give a missing value instead of an assertion error."""
    a, b = _check_pair(a, b)
    if min(a.shape[0], a.shape[1]) < MS_SSIM_MIN_SIDE:
        return math.nan
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    def to_t(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)

    with torch.no_grad():
        return float(_ms_ssim(to_t(a), to_t(b), data_range=255, size_average=True))


def ms_ssim_db(value: float) -> float:
    """MS-SSIM in dB, -10*log10(1 - MS-SSIM): spreads the values near 1 where codecs differ (inf for 1, nan kept)."""
    if value is None or math.isnan(value):
        return math.nan
    if value >= 1.0:
        return math.inf
    return -10.0 * math.log10(1.0 - value)


# ---- the scored metrics ------------------------------------------------------------------------------------

# Below 8 px on a side SSIMULACRA2 scores no scale at all and reports 100 (identical), and CVVDP fails on a
# side of 1 px: both give nan there instead, as MS-SSIM does under its own minimum.
PERCEPTUAL_MIN_SIDE = 8

# ColorVideoVDP's display: a 30-inch 4K monitor, 200 cd/m^2 peak, 250 lux office light, seen from twice its height
# (cvvdp's `standard_4k`, its own default), so a pixel is seen at about 75 pixels per degree.
CVVDP_DISPLAY = "standard_4k"


@dataclass(frozen=True)
class Metric:
    """A scored metric: its column label, the package that computes it and how (for reports)."""

    label: str
    package: str | None  # the module that must be importable; None: always available
    implementation: str


METRICS: dict[str, Metric] = {
    "psnr": Metric("PSNR (dB)", None, "RGB, 0-255, all pixels and channels"),
    "ms_ssim": Metric("MS-SSIM", "pytorch_msssim", "pytorch_msssim, RGB, 5 scales, data range 255"),
    "cvvdp": Metric("CVVDP (JOD)", "pycvvdp",
                    f"ColorVideoVDP (`cvvdp` on PyPI, package pycvvdp), display `{CVVDP_DISPLAY}`: 30-inch 4K, "
                    "200 cd/m^2, 250 lux, viewed from 2 x display height; JOD, 10 = no visible difference"),
    "ssimulacra2": Metric("SSIMULACRA2", "ssimulacra2",
                          "`ssimulacra2` on PyPI (a Python port of libjxl's metric that blurs with scipy instead "
                          "of the recursive Gaussian; its scores differ slightly from libjxl's tool); 100 = "
                          "identical, 90 visually lossless, 70 high, 50 medium, 30 low quality"),
}


def metric_unavailable(name: str) -> str | None:
    """None when `name` can be scored here, else why not and how to fix it."""
    m = METRICS.get(name)
    if m is None:
        return f"unknown metric {name!r} (known: {', '.join(METRICS)})"
    if m.package and not _has_module(m.package):
        return f"{m.package} is not installed (pip install -e \".[eval]\")"
    return None


def _to_hwc_tensor(x: np.ndarray):  # -> torch.Tensor
    import torch

    return torch.from_numpy(np.array(x, dtype=np.uint8, copy=True))  # torch wants a writable array


@lru_cache(maxsize=1)
def _cvvdp_model():  # -> (pycvvdp.cvvdp, threading.Lock)
    import pycvvdp
    import torch

    return pycvvdp.cvvdp(display_name=CVVDP_DISPLAY, quiet=True, device=torch.device("cpu")), threading.Lock()


def cvvdp(a: np.ndarray, b: np.ndarray) -> float:
    """ColorVideoVDP of test `b` against reference `a` in JOD (8-bit sRGB on CVVDP_DISPLAY)."""
    import torch

    a, b = _check_pair(a, b)
    if min(a.shape[:2]) < PERCEPTUAL_MIN_SIDE:
        return math.nan
    model, lock = _cvvdp_model()
    with lock, torch.no_grad():  # one metric object per process; its predict is not documented as thread-safe
        jod, _ = model.predict(_to_hwc_tensor(b), _to_hwc_tensor(a), dim_order="HWC")
    return float(jod)


def ssimulacra2(a: np.ndarray, b: np.ndarray) -> float:
    """SSIMULACRA2 of `b` against reference `a`, through the package's own entry point (it reads images with
    Pillow, so the arrays go in as uncompressed in-memory PPM files)."""
    from ssimulacra2.ssimulacra2 import compute_ssimulacra2

    a, b = _check_pair(a, b)
    if min(a.shape[:2]) < PERCEPTUAL_MIN_SIDE:
        return math.nan

    def ppm(x: np.ndarray) -> io.BytesIO:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(x, dtype=np.uint8), "RGB").save(buf, format="PPM")
        buf.seek(0)
        return buf

    return float(compute_ssimulacra2(ppm(a), ppm(b)))


_SCORERS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "psnr": psnr, "ms_ssim": ms_ssim, "cvvdp": cvvdp, "ssimulacra2": ssimulacra2}


def score(name: str, ref: np.ndarray, dec: np.ndarray) -> float:
    """`name`'s score of `dec` against `ref` (uint8 H x W x 3); higher is better for every metric."""
    reason = metric_unavailable(name)
    if reason:
        raise RuntimeError(f"{name}: {reason}")
    return _SCORERS[name](ref, dec)


# ---- optional perceptual metrics ------------------------------------------------------------------------------


def hub_checkpoints_dir() -> Path:
    """Where torchvision caches pretrained weights (honours torch.hub.set_dir and TORCH_HOME); does not import
    torch just to answer."""
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "hub"):
        return Path(torch.hub.get_dir()) / "checkpoints"
    if "TORCH_HOME" in os.environ:
        home = Path(os.environ["TORCH_HOME"]).expanduser()
    else:
        home = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "torch"
    return home / "hub" / "checkpoints"


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


# Where the backbone weights go, as the reports say it: torch's own name for the folder, not one machine's path
# (reports are kept in docs/).
HUB_CHECKPOINTS = "torch.hub.get_dir()/checkpoints"


def _lpips_check() -> str | None:
    """None when LPIPS can be built offline, else the reason it cannot and how to fix it."""
    ckpt = hub_checkpoints_dir() / ALEXNET_FILE
    missing = [what for what, ok in (("lpips package", _has_module("lpips")),
                                      ("torchvision", _has_module("torchvision")),
                                      ("AlexNet weights in the torch hub cache", ckpt.is_file())) if not ok]
    if not missing:
        return None
    return f"no {' and no '.join(missing)}; install lpips and place {ALEXNET_FILE} in {HUB_CHECKPOINTS}"


def _dists_check() -> tuple[str | None, str | None]:
    """(backend, None) when DISTS can be built offline, else (None, the reason and how to fix it)."""
    vgg = hub_checkpoints_dir() / VGG16_FILE
    reasons = []
    if _has_module("DISTS_pytorch"):
        if not vgg.is_file():
            reasons.append(f"DISTS_pytorch is installed but needs {VGG16_FILE} in {HUB_CHECKPOINTS}")
        elif _dists_pytorch_weights() is None:
            reasons.append("DISTS_pytorch is installed without its weights.pt")
        else:
            return "DISTS_pytorch", None
    if _has_module("piq"):
        if not vgg.is_file() or not (vgg.parent / PIQ_DISTS_FILE).is_file():
            reasons.append(f"piq is installed but needs {VGG16_FILE} and {PIQ_DISTS_FILE} in {HUB_CHECKPOINTS}")
        else:
            return "piq", None
    if not reasons:
        reasons.append(f"no DISTS_pytorch or piq package; install one and place {VGG16_FILE} in {HUB_CHECKPOINTS}")
    return None, "; ".join(reasons)


def _dists_pytorch_weights() -> Path | None:
    """DISTS_pytorch 0.1 installs its alpha/beta file at sys.prefix (other installs keep it beside the package)."""
    p = Path(sys.prefix) / "weights.pt"
    if p.is_file():
        return p
    spec = importlib.util.find_spec("DISTS_pytorch")
    if spec is not None and spec.origin:
        p = Path(spec.origin).parent / "weights.pt"
        if p.is_file():
            return p
    return None


def _to_unit_tensor(x: np.ndarray, device: str):  # -> torch.Tensor
    import torch

    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)
    return t.to(device)


def lpips_unavailable() -> str | None:
    """None when LPIPS can be built offline (eval and training), else what is missing and how to fix it."""
    return _lpips_check()


def make_lpips(device: str = "cpu"):  # -> torch.nn.Module
    """A new LPIPS(alex), built offline: the backbone created randomly (pnet_rand: nothing fetched) and then
    filled from the local AlexNet checkpoint; the small linear heads ship inside the lpips package. The one
    place LPIPS is built, for evaluation and for training losses."""
    import lpips
    import torch

    model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    state = torch.load(hub_checkpoints_dir() / ALEXNET_FILE, map_location="cpu", weights_only=True)
    # lpips keeps torchvision's feature modules under their original indices: slice{k}.{idx}.{param}.
    mapped = {}
    for key in model.net.state_dict():
        _, idx, param = key.split(".")
        mapped[key] = state[f"features.{idx}.{param}"]
    model.net.load_state_dict(mapped, strict=True)
    return model.eval().requires_grad_(False).to(device)


_build_lpips = lru_cache(maxsize=4)(make_lpips)


@lru_cache(maxsize=4)
def _build_dists(backend: str, device: str):
    """Built only after _dists_check() found every file, so torchvision loads the cached VGG16 without fetching."""
    if backend == "DISTS_pytorch":
        import torch
        from DISTS_pytorch import DISTS

        # Its own loader only looks at sys.prefix; load alpha/beta from wherever _dists_pytorch_weights found them.
        model = DISTS(load_weights=False)
        w = torch.load(_dists_pytorch_weights(), map_location="cpu", weights_only=True)
        model.alpha.data, model.beta.data = w["alpha"], w["beta"]
    else:
        import piq

        model = piq.DISTS(reduction="none")
    return model.eval().to(device)


def perceptual_metrics(device: str = "cpu") -> dict[str, PerceptualFn]:
    """Available perceptual metrics as {name: fn(a, b) -> float} (lower = more similar); empty when none can be
    built offline. Models are built once per device."""
    out: dict[str, PerceptualFn] = {}
    if _lpips_check() is None:
        import torch

        model = _build_lpips(device)

        def lpips_fn(a: np.ndarray, b: np.ndarray) -> float:
            a, b = _check_pair(a, b)
            with torch.no_grad():
                return float(model(_to_unit_tensor(a, device), _to_unit_tensor(b, device), normalize=True).mean())

        out["lpips"] = lpips_fn
    backend, _ = _dists_check()
    if backend is not None:
        import torch

        dmodel = _build_dists(backend, device)

        def dists_fn(a: np.ndarray, b: np.ndarray) -> float:
            a, b = _check_pair(a, b)
            with torch.no_grad():
                return float(dmodel(_to_unit_tensor(a, device), _to_unit_tensor(b, device)).mean())

        out["dists"] = dists_fn
    return out


def perceptual_status() -> list[str]:
    """One human-readable line per optional metric, saying whether it is used and, if not, how to enable it."""
    lines = []
    reason = _lpips_check()
    lines.append("LPIPS: available (alex)" if reason is None else f"LPIPS: not available ({reason})")
    backend, reason = _dists_check()
    lines.append(f"DISTS: available ({backend})" if backend else f"DISTS: not available ({reason})")
    return lines
