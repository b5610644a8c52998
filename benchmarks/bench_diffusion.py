"""Latency of one diffusion decode of the paper-size SODEC architecture, part by part, with random
weights built from configs (nothing is downloaded): the SD 2.1-base UNet and VAE, an OpenCLIP
ViT-H/14-shaped vision tower, the TAESD-layout tiny VAE, and SODEC's own D_a, H_s, T_s and F_p from
the `sodec-sd21` config.

    # GPU (the issue's goal: 512x512 diffusion decode <= 40 ms on an H100)
    python benchmarks/bench_diffusion.py --device cuda --dtype fp16 --channels-last
    python benchmarks/bench_diffusion.py --device cuda --dtype fp16 --channels-last --cuda-graphs
    python benchmarks/bench_diffusion.py --device cuda --dtype fp16 --channels-last --compile max-autotune
    python benchmarks/bench_diffusion.py --device cuda --dtype fp16 --channels-last --tiny-vae --cuda-graphs
    # CPU draft path
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_diffusion.py --device cpu --tiny-vae --channels-last

Stage times are medians of --repeat runs after --warmup runs, each stage synchronised on its own
(CUDA events on the GPU). The end-to-end rows time whole decodes: `codec.decode_image` exactly as the
engine runs it (it moves x_f and the SD latent through host memory), and the same networks chained
on the device (the decode_image change proposed in benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import speed_options  # noqa: E402
from common import PeakMemory, device_line, load_average, markdown_table, median, parse_sizes, time_call  # noqa: E402

from sodec_plugin import codec, speed  # noqa: E402
from sodec_plugin.config import builtin_configs  # noqa: E402
from sodec_plugin.models.sodec import SODECModel  # noqa: E402

# stabilityai/stable-diffusion-2-1-base (sd2-community mirror), unet/config.json
SD21_BASE_UNET: dict[str, Any] = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "center_input_sample": False,
    "flip_sin_to_cos": True, "freq_shift": 0,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "only_cross_attention": False, "block_out_channels": (320, 640, 1280, 1280), "layers_per_block": 2,
    "downsample_padding": 1, "mid_block_scale_factor": 1, "act_fn": "silu", "norm_num_groups": 32,
    "norm_eps": 1e-5, "cross_attention_dim": 1024, "attention_head_dim": (5, 10, 20, 20),
    "dual_cross_attention": False, "use_linear_projection": True, "class_embed_type": None,
    "num_class_embeds": None, "upcast_attention": False, "resnet_time_scale_shift": "default",
}
# the SD 2.x VAE, vae/config.json
SD_VAE: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "act_fn": "silu", "layers_per_block": 2,
    "norm_num_groups": 32, "sample_size": 512, "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4,
    "scaling_factor": 0.18215,
}
# laion/CLIP-ViT-H-14-laion2B-s32B-b79K, vision_config
VIT_H14: dict[str, Any] = {
    "hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32, "num_attention_heads": 16,
    "patch_size": 14, "image_size": 224, "projection_dim": 1024, "hidden_act": "gelu", "layer_norm_eps": 1e-5,
    "num_channels": 3,
}

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def n_params(mod: torch.nn.Module | None) -> float:
    return sum(p.numel() for p in mod.parameters()) / 1e6 if mod is not None else 0.0


def build(args: argparse.Namespace) -> SODECModel:
    """The sodec-sd21 model with random base networks attached (built directly on the device)."""
    from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    dev, dt = torch.device(args.device), DTYPES[args.dtype]
    t0 = time.perf_counter()
    # Built on the CPU (default initialisation), then moved to the device and dtype.
    if args.arch == "tiny":  # plumbing check with the test models
        from sodec_plugin import testing

        cfg = builtin_configs()["tiny"]
        m = SODECModel(cfg)
        unet, vae, vit = testing.tiny_unet(cfg), testing.tiny_vae(cfg), testing.tiny_vit(cfg)
    else:
        cfg = builtin_configs()["sodec-sd21"]
        m = SODECModel(cfg)
        unet = UNet2DConditionModel(**SD21_BASE_UNET)
        vae = AutoencoderKL(**SD_VAE)
        vit = CLIPVisionModelWithProjection(CLIPVisionConfig(**VIT_H14))
    tiny = AutoencoderTiny() if args.tiny_vae else None
    d = m.diffusion
    d.attach_base(unet, vae, vit)
    d.set_draft_vae(tiny)
    m.eval().requires_grad_(False)
    for net in (unet, vae, vit, tiny):
        if net is not None:
            net.eval().requires_grad_(False)
    m.to_runtime(dev, dt)
    print(f"built random {cfg.name} in {time.perf_counter() - t0:.1f} s: UNet {n_params(unet):.0f}M, "
          f"VAE {n_params(vae):.0f}M (decoder {n_params(vae.decoder):.0f}M), ViT {n_params(vit):.0f}M, "
          f"tiny VAE {n_params(tiny):.1f}M, D_a {n_params(m.fidelity_decoder):.1f}M, "
          f"H_s+T_s {n_params(d.side_synthesis) + n_params(d.transform):.1f}M, "
          f"F_p {n_params(d.guidance_projection):.1f}M parameters")
    return m


def apply_speed(m: SODECModel, args: argparse.Namespace) -> str:
    d = m.diffusion
    notes = []
    if args.channels_last:
        speed.optimize_codec(m)  # D_a, H_s, T_s: channels_last + fused GDN
        notes.append("channels_last (UNet, VAEs, D_a, H_s, T_s) + fused GDN")
    mode = args.compile
    if mode and args.cuda_graphs and mode in ("default", "max-autotune-no-cudagraphs"):
        mode = "reduce-overhead"  # inductor's CUDA graphs
    speed_options.optimize_diffusion(d, use_channels_last=args.channels_last, sdpa=True, fuse_qkv=args.fuse_qkv,
                             compile_mode=mode, fullgraph=args.fullgraph)
    if mode:
        kw = {"dynamic": False, "fullgraph": args.fullgraph} | ({} if mode == "default" else {"mode": mode})
        m.fidelity_decoder.forward = torch.compile(m.fidelity_decoder.forward, **kw)
        notes.append(f"torch.compile(mode={mode!r}, fullgraph={args.fullgraph}) on UNet, VAE decode, ViT, D_a")
    elif args.cuda_graphs:
        if not str(args.device).startswith("cuda"):
            raise SystemExit("--cuda-graphs needs --device cuda")
        speed_options.graph_diffusion(d)
        m.fidelity_decoder.forward = speed_options.GraphedCallable(m.fidelity_decoder.forward)
        notes.append("manual CUDA graphs (speed_options.graph_diffusion) on UNet, VAE/tiny decode, ViT, F_p, H_s, "
                     "T_s, D_a")
    if args.fuse_qkv:
        notes.append("fused QKV")
    return "; ".join(notes) or "eager, no speed options"


def inputs(m: SODECModel, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Random latents of the right shapes: y_hat (1, 220, H/16, W/16), integer z_hat (1, 320, H/64, W/64)."""
    w, h = size
    hp, wp = -(-h // 64) * 64, -(-w // 64) * 64
    g = torch.Generator().manual_seed(1)
    y_hat = torch.randn(1, m.cfg.latent_channels, hp // 16, wp // 16, generator=g) * 2.0
    z_hat = torch.randint(-4, 5, (1, m.cfg.hyper_latent_channels, hp // 64, wp // 64), generator=g).float()
    return y_hat, z_hat


def device_pipeline(m: SODECModel, y_hat: torch.Tensor, z_hat: torch.Tensor, draft: bool,
                    guidance: float = 1.0) -> torch.Tensor:
    """The untiled diffusion decode with every intermediate kept on the device."""
    dev, dt = m.device, m.dtype
    d = m.diffusion
    with torch.inference_mode():
        y, z = y_hat.to(dev, dt, non_blocking=True), z_hat.to(dev, dt, non_blocking=True)
        x_f = m.fidelity_decoder(y)
        y_t = d.transform(y, d.side_synthesis(z))
        cond = d.guidance_tokens(x_f, guidance)
        return d.decode_latent(d.denoise(y_t, cond), draft=draft).float().cpu()


def run(args: argparse.Namespace) -> None:
    if args.device == "cpu":
        torch.set_flush_denormal(True)
        if args.threads:
            speed_options.set_threads(args.threads)
    else:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    dev = args.device
    m = build(args)
    d = m.diffusion
    notes = apply_speed(m, args)
    size = parse_sizes(args.size)[0]
    y_hat, z_hat = inputs(m, size)
    draft = args.tiny_vae
    dt = m.dtype
    arch = "paper-size architecture" if args.arch == "sd21" else "TINY test architecture (plumbing check only)"
    print(f"\n# SODEC diffusion decode, {arch} (random weights), {size[0]}x{size[1]}\n")
    print(f"Device: {device_line(dev)}")
    print(f"dtype {args.dtype}; {notes}; decoder VAE: {'tiny (AutoencoderTiny, TAESD layout)' if draft else 'SD VAE'}")
    procs = speed_options.attention_processors
    print(f"Attention: UNet {procs(d.unet)}, VAE {procs(d.vae)}, ViT {procs(d.vit)}; torch SDPA backends: flash "
          f"{torch.backends.cuda.flash_sdp_enabled()}, "
          f"mem-efficient {torch.backends.cuda.mem_efficient_sdp_enabled()}, "
          f"cuDNN {getattr(torch.backends.cuda, 'cudnn_sdp_enabled', lambda: 'n/a')()}")
    omp = os.environ.get("OMP_WAIT_POLICY")
    print(f"Command: {'OMP_WAIT_POLICY=' + omp + ' ' if omp else ''}python {' '.join(sys.argv)}\n")

    # Inputs of each stage, made once on the device (cloned: CUDA-graph outputs are reused buffers).
    with torch.inference_mode():
        y_dev, z_dev = y_hat.to(dev, dt), z_hat.to(dev, dt)
        x_f = m.fidelity_decoder(y_dev).clone()
        w = d.side_synthesis(z_dev).clone()
        y_t = d.transform(y_dev, w).clone()
        cond = d.guidance_tokens(x_f, 1.0).clone()
        y0 = d.denoise(y_t, cond).clone()
    big = args.arch == "sd21"
    stages: list[tuple[str, Any]] = [
        ("D_a fidelity decoder (y_hat -> x_f)", lambda: m.fidelity_decoder(y_dev)),
        ("H_s side synthesis (z_hat -> w)", lambda: d.side_synthesis(z_dev)),
        ("T_s transform ((y_hat, w) -> y_t)", lambda: d.transform(y_dev, w)),
        (f"ViT{'-H/14' if big else ''} + F_p (x_f -> {tuple(cond.shape[1:])} tokens)",
         lambda: d.guidance_tokens(x_f, 1.0)),
        (f"UNet, one step{' (SD 2.1 base)' if big else ''}", lambda: d.denoise(y_t, cond)),
        ("tiny VAE decode (TAESD layout)" if draft else "VAE decode (SD)", lambda: d.decode_latent(y0, draft=draft)),
    ]
    rows: list[list[Any]] = []
    records: dict[str, Any] = {"device": device_line(dev), "notes": notes, "size": list(size), "dtype": args.dtype}
    mark = getattr(torch.compiler, "cudagraph_mark_step_begin", None) if args.compile else None
    with torch.inference_mode():
        for name, fn in stages:
            first = None
            samples = []
            for i in range(args.warmup + args.repeat):
                if mark is not None and dev.startswith("cuda"):
                    mark()
                _, ms = time_call(fn, dev)
                if i == 0:
                    first = ms
                if i >= args.warmup:
                    samples.append(ms)
            rows.append([name, median(samples), min(samples), first])
            records[name] = samples
            print(f"  {name}: {median(samples):.1f} ms", flush=True)
        total = sum(r[1] for r in rows)
        rows.append(["sum of the stages", total, sum(r[2] for r in rows), float("nan")])

    e2e = [("codec.decode_image (engine as is)", lambda: codec.decode_image(m, y_hat, z_hat, "diffusion", 1.0,
                                                                            draft=draft)),
           ("device-resident chain (proposed decode_image)", lambda: device_pipeline(m, y_hat, z_hat, draft))]
    for name, fn in e2e if args.e2e_repeat > 0 else []:
        samples, first = [], None
        for i in range(args.e2e_warmup + args.e2e_repeat):
            if mark is not None and dev.startswith("cuda"):
                mark()
            if i == args.e2e_warmup + args.e2e_repeat - 1:
                with PeakMemory(dev) as pm:
                    _, ms = time_call(fn, dev)
            else:
                _, ms = time_call(fn, dev)
            if i == 0:
                first = ms
            if i >= args.e2e_warmup:
                samples.append(ms)
        rows.append([f"end to end: {name}", median(samples), min(samples), first])
        where = "allocated on the GPU" if dev.startswith("cuda") else "process RSS"
        rows[-1][0] += f" (peak {pm.peak_mb:.0f} MB {where}, +{pm.extra_mb:.0f} MB for the decode)"
        records[name] = samples
        print(f"  {name}: {median(samples):.1f} ms", flush=True)
    if args.int8_extra and dev == "cpu":  # last: it quantises the ViT and the UNet in place
        with torch.inference_mode():
            rows += int8_rows(m, x_f, y_t, cond, args)
    print()
    print(markdown_table(["part", "ms (median)", "ms (min)", "first call ms"], rows))
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1))


def int8_rows(m: SODECModel, x_f: torch.Tensor, y_t: torch.Tensor, cond: torch.Tensor,
              args: argparse.Namespace) -> list[list[Any]]:
    """CPU only: the ViT and the UNet again with their nn.Linear layers dynamically quantised to int8
    (fbgemm); convolutions stay fp32. An experiment: numerics change, nothing in the engine uses it."""
    import warnings

    from torch.ao.quantization import quantize_dynamic

    d = m.diffusion
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vit_q = quantize_dynamic(d.vit, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
        unet_q = quantize_dynamic(d.unet, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    d.attach_base(unet_q, d.vae, vit_q)
    for name, fn in (("ViT-H/14 + F_p, int8 dynamic Linear (experiment)", lambda: d.guidance_tokens(x_f, 1.0)),
                     ("UNet one step, int8 dynamic Linear (experiment)", lambda: d.denoise(y_t, cond))):
        samples = [time_call(fn)[1] for _ in range(args.warmup + args.repeat)][args.warmup:]
        out.append([name, median(samples), min(samples), float("nan")])
        print(f"  {name}: {median(samples):.1f} ms", flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, choices=list(DTYPES), help="default fp16 on CUDA, fp32 on the CPU")
    ap.add_argument("--size", default="512x512", help="WxH; above 768 px the engine decodes in tiles")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--compile", nargs="?", const="max-autotune", default=None,
                    help="torch.compile mode (bare flag: max-autotune; e.g. default, reduce-overhead, "
                         "max-autotune-no-cudagraphs)")
    ap.add_argument("--fullgraph", action="store_true", help="torch.compile(fullgraph=True)")
    ap.add_argument("--cuda-graphs", action="store_true",
                    help="CUDA graphs: manual capture per network, or inductor's with --compile")
    ap.add_argument("--fuse-qkv", action="store_true", help="diffusers fuse_qkv_projections on the UNet")
    ap.add_argument("--tiny-vae", action="store_true", help="decode through AutoencoderTiny (the draft path)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads on the CPU (default: all cores)")
    ap.add_argument("--repeat", type=int, default=None, help="timed runs per stage (default 20 CUDA, 3 CPU)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 5 CUDA, 1 CPU)")
    ap.add_argument("--e2e-repeat", type=int, default=None,
                    help="timed end-to-end decodes (default: --repeat; 0 skips them)")
    ap.add_argument("--e2e-warmup", type=int, default=None, help="(default: 1 CUDA, 0 CPU: stages warmed it)")
    ap.add_argument("--int8-extra", action="store_true", help="CPU: also time ViT and UNet with int8 dynamic Linear")
    ap.add_argument("--arch", default="sd21", choices=["sd21", "tiny"],
                    help="sd21: the paper-size networks; tiny: the test models (a quick plumbing check)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit("CUDA is not available here; use --device cpu")
    args.dtype = args.dtype or ("fp16" if cuda else "fp32")
    args.repeat = args.repeat or (20 if cuda else 3)
    args.warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    if args.compile and cuda:
        args.warmup = max(args.warmup, 3)  # the first calls compile (minutes with max-autotune)
    args.e2e_repeat = args.repeat if args.e2e_repeat is None else args.e2e_repeat
    args.e2e_warmup = args.e2e_warmup if args.e2e_warmup is not None else (1 if cuda else 0)
    t0 = time.perf_counter()
    run(args)
    print(f"\nWall time {time.perf_counter() - t0:.0f} s; load average at end {load_average()}")


if __name__ == "__main__":
    main()
