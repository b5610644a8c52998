"""Speed options of the benchmarks for the diffusion decoder (not applied by the engine): thread
settings, SDPA attention, channels_last, fused QKV, ``torch.compile`` and CUDA graphs by hand.

    import speed_options
    speed_options.optimize_diffusion(model.diffusion, compile_mode="max-autotune")   # GPU

Like sodec_plugin.speed they patch instances in place and leave the entropy parameters alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from sodec_plugin.speed import channels_last, unpatch  # noqa: F401 - unpatch undoes these patches too


# ---- threads ----------------------------------------------------------------------------------
def set_threads(n: int | None = None) -> int:
    """Intra-op threads for torch (default: the CPUs this process may run on); returns the count.
    On a machine shared with other busy processes fewer threads than cores can be faster: an
    OpenMP region waits for its slowest thread."""
    if n is None or n <= 0:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(int(n))
    return torch.get_num_threads()


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
