"""The engine's exact inference reformulations, applied to every model at load (engine.get_model):
channels_last, a fused GDN in cache-sized chunks, and sub-pixel output convolutions.

Nothing here touches the entropy parameters: they come from the exact fixed-point prior
(``models/prior.py``), so files written with or without these helpers decode anywhere. The networks
they touch (E, H_a, D_a, H_s, T_s) give the same results up to float rounding (which, as with any
BLAS or thread-count change, could move a rounded y symbol of the encoder; on every file checked
the bytes were identical).

The helpers patch instances in place (state_dict keys and saved files stay as they are) and are
meant for frozen inference models; a layer whose parameters require grad falls back to its own
forward. The diffusion decoder's benchmark options (SDPA checks, torch.compile, CUDA graphs) live
in benchmarks/speed_options.py.
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["channels_last", "fast_gdn", "optimize_codec", "subpixel_convs", "subpixel_weight", "unpatch"]


# ---- GDN --------------------------------------------------------------------------------------
def _version(t: torch.Tensor) -> int | None:
    """A tensor's in-place version counter; inference tensors (a model loaded or moved under
    torch.inference_mode, as ComfyUI does) have none, and cannot be written outside that mode."""
    try:
        return t._version
    except RuntimeError:
        return None


def _gdn_params(gdn: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(gamma as a 1x1 conv weight, gamma transposed (C_in, C_out) for a matmul, beta), reparametrised
    once and cached until the parameters change (their version counters move on any in-place write)."""
    key = (_version(gdn.beta), _version(gdn.gamma), gdn.beta.data_ptr(), gdn.gamma.data_ptr(), x.dtype, x.device)
    cached = gdn.__dict__.get("_sodec_fast_params")
    if cached is not None and cached[0] == key:
        return cached[1]
    with torch.no_grad():
        beta = gdn.beta_reparam(gdn.beta).to(x.device, x.dtype).contiguous()
        gamma = gdn.gamma_reparam(gdn.gamma).to(x.device, x.dtype)
        c = gamma.shape[0]
        params = (gamma.reshape(c, c, 1, 1).contiguous(), gamma.t().contiguous(), beta)
    gdn.__dict__["_sodec_fast_params"] = (key, params)
    return params


GDN_CHUNK_ROWS = 1024


def _fast_gdn_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """GDN / inverse GDN (models/gdn.py) with the reparametrisation cached, the 1x1 conv done as one
    matmul on channels_last input (a view, no copy) and the elementwise tail done in place."""
    if torch.is_grad_enabled() and (self.beta.requires_grad or self.gamma.requires_grad or x.requires_grad):
        return type(self).forward(self, x)
    weight, weight_t, beta = _gdn_params(self, x)
    n, c, h, w = x.shape
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        flat = x.permute(0, 2, 3, 1).reshape(n * h * w, c)  # a view of the NHWC storage
        out = torch.empty_like(flat)
        # Pixels in chunks that stay in cache through square, matmul, bias, root and product: at 1/2
        # resolution of a Kodak image (98,304 x 64) 12 ms instead of 22 ms for whole-tensor passes,
        # with the same values (each output row is the same dot products).
        for s in range(0, flat.shape[0], GDN_CHUNK_ROWS):
            f, o = flat[s:s + GDN_CHUNK_ROWS], out[s:s + GDN_CHUNK_ROWS]
            torch.mm(f * f, weight_t, out=o)
            o.add_(beta)
            (o.sqrt_() if self.inverse else o.rsqrt_()).mul_(f)
        return out.view(n, h, w, c).permute(0, 3, 1, 2)
    norm = F.conv2d(x * x, weight, beta)
    norm = norm.sqrt_() if self.inverse else norm.rsqrt_()
    return norm.mul_(x)


def _is_gdn(mod: nn.Module) -> bool:
    """A GDN layer, the project's (models/gdn.py) or compressai's: both have these attributes."""
    return all(hasattr(mod, a) for a in ("beta", "gamma", "beta_reparam", "gamma_reparam", "inverse"))


def fast_gdn(module: nn.Module) -> int:
    """Patch every GDN inside `module` with the fused forward; returns how many."""
    count = 0
    for mod in module.modules():
        if _is_gdn(mod) and "forward" not in mod.__dict__:
            mod.forward = types.MethodType(_fast_gdn_forward, mod)
            count += 1
    return count


# ---- transposed convolutions as sub-pixel convolutions ---------------------------------------------
# Measured on these 2 cores, 1 thread, channels_last: the 64 -> 3 output layer of D_a at 768x512 takes
# 33 ms as a transposed convolution and 17 ms as a 3x3 convolution to 12 channels + pixel shuffle; the
# 64 -> 64 layers are faster as they are (29 vs 45 ms at 1/2 resolution), so only narrow outputs change.
SUBPIXEL_MAX_OUT_CHANNELS = 16


def subpixel_weight(weight: torch.Tensor) -> torch.Tensor:
    """The 3x3 convolution weight (4 * C_out, C_in, 3, 3) that, followed by pixel_shuffle(2), equals a
    ConvTranspose2d(k=5, stride=2, padding=2, output_padding=1) of `weight` (C_in, C_out, 5, 5):
    output phase r of row 2i + r reads input rows i + j with kernel tap 2 - 2j + r (j = -1, 0, 1)."""
    cin, cout = weight.shape[:2]
    w = weight.new_zeros(cout, 2, 2, cin, 3, 3)
    for ry in (0, 1):
        for jy in (-1, 0, 1):
            ky = 2 - 2 * jy + ry
            for rx in (0, 1):
                for jx in (-1, 0, 1):
                    kx = 2 - 2 * jx + rx
                    if 0 <= ky <= 4 and 0 <= kx <= 4:
                        w[:, ry, rx, :, jy + 1, jx + 1] = weight[:, :, ky, kx].t()
    return w.reshape(cout * 4, cin, 3, 3)


def _subpixel_forward(self: nn.ConvTranspose2d, x: torch.Tensor, output_size: Any = None) -> torch.Tensor:
    if output_size is not None or (torch.is_grad_enabled() and (self.weight.requires_grad or x.requires_grad)):
        return type(self).forward(self, x, output_size)
    key = (_version(self.weight), _version(self.bias), self.weight.data_ptr(), x.dtype, x.device)
    cached = self.__dict__.get("_sodec_fast_params")
    if cached is None or cached[0] != key:
        with torch.no_grad():
            w = subpixel_weight(self.weight.to(x.dtype)).contiguous(memory_format=torch.channels_last)
            b = None if self.bias is None else self.bias.to(x.dtype).repeat_interleave(4)
        cached = (key, (w, b))
        self.__dict__["_sodec_fast_params"] = cached
    w, b = cached[1]
    return F.pixel_shuffle(F.conv2d(x, w, b, padding=1), 2)


def subpixel_convs(module: nn.Module, max_out_channels: int = SUBPIXEL_MAX_OUT_CHANNELS) -> int:
    """Patch the 5x5 stride-2 transposed convolutions inside `module` with at most `max_out_channels`
    outputs to run as sub-pixel convolutions (the same sums in another order); returns how many."""
    count = 0
    for mod in module.modules():
        if (isinstance(mod, nn.ConvTranspose2d) and "forward" not in mod.__dict__ and mod.kernel_size == (5, 5)
                and mod.stride == (2, 2) and mod.padding == (2, 2) and mod.output_padding == (1, 1)
                and mod.dilation == (1, 1) and mod.groups == 1 and mod.out_channels <= max_out_channels):
            mod.forward = types.MethodType(_subpixel_forward, mod)
            count += 1
    return count


def unpatch(module: nn.Module) -> None:
    """Undo fast_gdn / subpixel_convs / graph_diffusion / compile patches on every submodule."""
    for mod in module.modules():
        for name in ("forward", "decode", "_sodec_fast_params"):
            mod.__dict__.pop(name, None)


def channels_last(*modules: nn.Module | None) -> None:
    """4-D weights to channels_last: oneDNN (CPU) and cuDNN (GPU) then keep activations NHWC.
    Measured on the bundled model (CPU): transposed 5x5 convs about 2x faster."""
    for mod in modules:
        if mod is not None:
            mod.to(memory_format=torch.channels_last)


# ---- the codec's own networks -----------------------------------------------------------------
def optimize_codec(model: Any, *, use_channels_last: bool = True, use_fast_gdn: bool = True,
                   use_subpixel: bool = True) -> Any:
    """E, H_a, D_a (and H_s, T_s when present) to channels_last with the fused GDN, and D_a's output
    layer as a sub-pixel convolution; in place."""
    comp = model.compression
    nets = [comp.analysis, comp.hyper_analysis, model.fidelity_decoder]
    if getattr(model, "diffusion", None) is not None:
        nets += [model.diffusion.side_synthesis, model.diffusion.transform]
    if use_channels_last:
        channels_last(*nets)
    if use_fast_gdn:
        for net in nets:
            fast_gdn(net)
    if use_subpixel:
        subpixel_convs(model.fidelity_decoder)
    return model
