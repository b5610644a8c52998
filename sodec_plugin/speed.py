"""Opt-in inference speed-ups: thread settings, channels_last, a fused GDN, SDPA checks,
``torch.compile`` and CUDA graphs for the diffusion decoder.

Nothing here touches the entropy parameters: they come from the exact fixed-point prior
(``models/prior.py``), so files written with or without these helpers decode anywhere. The networks
they touch (E, H_a, D_a, H_s, T_s, the UNet, the VAEs, the ViT) give the same results up to float
rounding (which, as with any BLAS or thread-count change, can move a rounded y symbol of the encoder;
on the Kodak images checked the files were byte-identical).

    from sodec_plugin import speed
    model = sodec_plugin.load_model(...)
    speed.optimize_codec(model)                   # CPU or GPU: channels_last + fused GDN
    speed.optimize_diffusion(model.diffusion, compile_mode="max-autotune")   # GPU

The helpers patch instances in place (state_dict keys and saved files stay as they are) and are
meant for frozen inference models; a GDN whose parameters require grad falls back to compressai's
own forward.
"""

from __future__ import annotations

import os
import types
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .tiling import balanced_tile, tiled_apply  # noqa: F401 - re-exported for the benchmarks

__all__ = [
    "GraphedCallable", "attention_processors", "balanced_tile", "channels_last", "fast_gdn", "graph_diffusion",
    "optimize_codec", "optimize_diffusion", "set_threads", "subpixel_convs", "subpixel_weight", "tiled_apply",
    "unpatch",
]


# ---- threads ----------------------------------------------------------------------------------
def set_threads(n: int | None = None) -> int:
    """Intra-op threads for torch (default: the CPUs this process may run on); returns the count.
    On a machine shared with other busy processes fewer threads than cores can be faster: an
    OpenMP region waits for its slowest thread."""
    if n is None or n <= 0:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(int(n))
    return torch.get_num_threads()


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
    """compressai's GDN / inverse GDN with the reparametrisation cached, the 1x1 conv done as one
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


def fast_gdn(module: nn.Module) -> int:
    """Patch every compressai GDN inside `module` with the fused forward; returns how many."""
    from compressai.layers import GDN

    count = 0
    for mod in module.modules():
        if isinstance(mod, GDN) and "forward" not in mod.__dict__:
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


# ---- the diffusion decoder --------------------------------------------------------------------
def attention_processors(module: nn.Module | None) -> dict[str, int]:
    """Attention processor class names of a diffusers model -> count (AttnProcessor2_0 = SDPA), or
    the transformers attention implementation of a ViT."""
    if module is None:
        return {}
    procs = getattr(module, "attn_processors", None)
    if isinstance(procs, dict):
        out: dict[str, int] = {}
        for p in procs.values():
            out[type(p).__name__] = out.get(type(p).__name__, 0) + 1
        return out
    impl = getattr(getattr(module, "config", None), "_attn_implementation", None)
    return {f"transformers:{impl}": 1} if impl else {}


def _use_sdpa(module: nn.Module | None) -> None:
    if module is None or not hasattr(module, "set_attn_processor"):
        return
    from diffusers.models.attention_processor import AttnProcessor2_0

    if any(type(p).__name__ != "AttnProcessor2_0" for p in module.attn_processors.values()):
        module.set_attn_processor(AttnProcessor2_0())


def optimize_diffusion(d: Any, *, use_channels_last: bool = True, sdpa: bool = True, fuse_qkv: bool = False,
                       compile_mode: str | None = None, fullgraph: bool = False, compile_vit: bool = True) -> Any:
    """Speed settings for a DiffusionDecoder's base networks (in place).

    compile_mode: None (eager), "default", "reduce-overhead" (CUDA graphs through inductor),
    "max-autotune" (Triton autotuning; CUDA graphs too) or "max-autotune-no-cudagraphs". The UNet's
    forward, the VAE's and tiny VAE's `decode` and the ViT's forward are compiled, the way the
    diffusers docs compile a pipeline. The first decode at each new shape pays the compilation.
    """
    unet, vae, vit, tiny = d.unet, d.vae, d.vit, d.tiny_vae
    if sdpa:
        for m in (unet, vae, tiny):
            _use_sdpa(m)
    if fuse_qkv and unet is not None and hasattr(unet, "fuse_qkv_projections"):
        unet.fuse_qkv_projections()
    if use_channels_last:
        channels_last(unet, vae, tiny, d.side_synthesis, d.transform)
    if compile_mode:
        kw: dict[str, Any] = {"fullgraph": fullgraph, "dynamic": False}
        if compile_mode != "default":
            kw["mode"] = compile_mode
        if unet is not None:
            unet.forward = torch.compile(unet.forward, **kw)
        for m in (vae, tiny):
            if m is not None:
                m.decode = torch.compile(m.decode, **kw)
        if compile_vit and vit is not None:
            vit.forward = torch.compile(vit.forward, **kw)
    return d


class GraphedCallable:
    """Manual CUDA-graph capture of a callable with tensor arguments, one graph per input signature
    (shapes, dtypes, devices and non-tensor arguments). Calls copy the inputs into the graph's static
    tensors, replay it and return clones of its outputs (so the next replay cannot overwrite them).

    The callable must be capturable: no host syncs, no CPU->GPU copies and no data-dependent Python
    branches inside (the UNet, the VAE decoders, the ViT, T_s and H_s are)."""

    def __init__(self, fn: Callable[..., Any], warmup: int = 3, pool: Any = None) -> None:
        self.fn = fn
        self.warmup = warmup
        self.pool = pool
        self.graphs: dict[Any, tuple[torch.cuda.CUDAGraph, list[torch.Tensor], Any, list[torch.Tensor]]] = {}

    @staticmethod
    def _signature(leaves: list[Any]) -> tuple[Any, ...]:
        return tuple((tuple(x.shape), x.dtype, x.device, x.stride()) if isinstance(x, torch.Tensor) else repr(x)
                     for x in leaves)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from torch.utils._pytree import tree_flatten, tree_unflatten

        leaves, spec = tree_flatten((args, kwargs))
        if not any(isinstance(x, torch.Tensor) and x.is_cuda for x in leaves):
            return self.fn(*args, **kwargs)
        key = (spec, self._signature(leaves))
        entry = self.graphs.get(key)
        if entry is None:
            entry = self._capture(leaves, spec)
            self.graphs[key] = entry
        graph, static_in, out_spec, static_out = entry
        for dst, src in zip(static_in, leaves, strict=True):
            if isinstance(dst, torch.Tensor) and dst.data_ptr() != src.data_ptr():
                dst.copy_(src)
        graph.replay()
        return tree_unflatten([t.clone() if isinstance(t, torch.Tensor) else t for t in static_out], out_spec)

    def _capture(self, leaves: list[Any], spec: Any) -> tuple[Any, list[Any], Any, list[Any]]:
        from torch.utils._pytree import tree_flatten, tree_unflatten

        static_in = [x.clone() if isinstance(x, torch.Tensor) else x for x in leaves]
        args, kwargs = tree_unflatten(static_in, spec)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(self.warmup):  # cuDNN/cuBLAS autotuning and lazy init happen outside the graph
                self.fn(*args, **kwargs)
        torch.cuda.current_stream().wait_stream(stream)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            out = self.fn(*args, **kwargs)
        out_leaves, out_spec = tree_flatten(out)
        return graph, static_in, out_spec, out_leaves


def graph_diffusion(d: Any) -> dict[str, GraphedCallable]:
    """Replace the forward/decode of every heavy part of a DiffusionDecoder on CUDA with a
    GraphedCallable (captured at the first call per shape). Undo with `unpatch`. The ViT's input
    normalisation and F_p's tiny ops stay eager (guidance_tokens builds its mean/std on the host)."""
    graphed: dict[str, GraphedCallable] = {}
    targets: list[tuple[str, Any, str]] = [
        ("unet", d.unet, "forward"), ("vae", d.vae, "decode"), ("tiny_vae", d.tiny_vae, "decode"),
        ("vit", d.vit, "forward"), ("side_synthesis", d.side_synthesis, "forward"),
        ("transform", d.transform, "forward"), ("guidance_projection", d.guidance_projection, "forward"),
    ]
    for name, mod, attr in targets:
        if mod is None:
            continue
        g = GraphedCallable(getattr(mod, attr))
        setattr(mod, attr, g)  # an instance attribute: nn.Module.__call__ uses self.forward
        graphed[name] = g
    return graphed
