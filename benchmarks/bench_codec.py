"""Encode and decode latency, peak memory and rate of a SODEC model on Kodak images, next to
Pillow's AVIF on the same images in the same run.

    python benchmarks/bench_codec.py --model /work/runs/lite-snapshot --sizes 512x512,768x512 --repeat 5
    python benchmarks/bench_codec.py --model PATH --sizes 2048x1536 --repeat 3 --tile 48,128
    python benchmarks/bench_codec.py --model PATH --sizes 512x512 --profile

Images are real Kodak photos: 768x512 is a whole (landscape) image, smaller sizes are centre crops,
larger ones mosaics of several images. Each timing is the median of --repeat runs (per image) after
--warmup untimed runs; variants (engine defaults vs sodec_plugin.speed, thread counts) are
interleaved run by run so that a busy machine slows them alike. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import speed_options  # noqa: E402
from common import PeakMemory, device_line, load_average, markdown_table, median, parse_sizes, time_call  # noqa: E402

from sodec_plugin import codec, container, entropy, speed, tiling  # noqa: E402
from sodec_plugin.models.sodec import SODECModel  # noqa: E402

DEFAULT_IMAGES = "/work/shared/data/kodak"


# ---- images -----------------------------------------------------------------------------------
def kodak(folder: str) -> list[Image.Image]:
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".ppm"))
    if not paths:
        raise SystemExit(f"no images in {folder}")
    out = []
    for p in paths:
        with Image.open(p) as im:
            im = im.convert("RGB")
            out.append(im.transpose(Image.Transpose.ROTATE_90) if im.height > im.width else im)
    return out


def make_image(pool: list[Image.Image], size: tuple[int, int], start: int) -> Image.Image:
    """A size x size image of real photo content: a centre crop of one image when it fits, else a
    mosaic of whole images (cropped at the right and bottom edges)."""
    w, h = size
    first = pool[start % len(pool)]
    if w <= first.width and h <= first.height:
        left, top = (first.width - w) // 2, (first.height - h) // 2
        return first.crop((left, top, left + w, top + h))
    canvas = Image.new("RGB", (w, h))
    k = start
    for top in range(0, h, first.height):
        for left in range(0, w, first.width):
            canvas.paste(pool[k % len(pool)], (left, top))
            k += 1
    return canvas


def psnr(a: Image.Image, b: Image.Image) -> float:
    x = np.asarray(a.convert("RGB"), dtype=np.float64)
    y = np.asarray(b.convert("RGB"), dtype=np.float64)
    mse = float(np.mean((x - y) ** 2))
    return 10 * math.log10(255.0**2 / mse) if mse > 0 else float("inf")


# ---- AVIF -------------------------------------------------------------------------------------
def avif_encode(im: Image.Image, quality: int, speed_: int, threads: int) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="AVIF", quality=quality, speed=speed_, max_threads=threads)
    return buf.getvalue()


def avif_decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data), formats=["AVIF"]) as im:
        im.load()
        return im.copy()


def avif_quality_for(images: list[Image.Image], bpp: float, speed_: int, threads: int) -> int:
    """The AVIF quality whose mean rate on `images` is closest to `bpp` (bisection; rate rises with
    quality)."""
    lo, hi = 0, 100
    best, best_err = 50, float("inf")
    while lo <= hi:
        q = (lo + hi) // 2
        r = float(np.mean([len(avif_encode(im, q, speed_, threads)) * 8 / (im.width * im.height) for im in images]))
        if abs(r - bpp) < best_err:
            best, best_err = q, abs(r - bpp)
        if r < bpp:
            lo = q + 1
        else:
            hi = q - 1
    return best


# ---- variants ---------------------------------------------------------------------------------
@dataclass
class Variant:
    name: str
    model: SODECModel
    threads: int
    samples: dict[str, list[float]] = field(default_factory=dict)


def load_variants(args: argparse.Namespace) -> list[Variant]:
    from sodec_plugin.engine import norm_device, norm_dtype
    from sodec_plugin.hub import ModelNotFoundError, resolve_folder

    try:
        folder = resolve_folder(args.model)
    except ModelNotFoundError as e:
        raise SystemExit(f"{e}\n(pass --model PATH, e.g. a development snapshot)") from e
    dev, dt = norm_device(args.device), norm_dtype(args.dtype)
    threads = [int(t) for t in args.threads.split(",")] if args.threads else [speed_options.set_threads()]
    opts = {"off": [False], "on": [True], "both": [False, True]}[args.optimize]
    variants = []
    for opt in opts:
        model = SODECModel.from_folder(folder, device=dev, dtype=dt)
        if args.draft_vae and model.diffusion is not None:
            attach_draft_vae(model, args.draft_vae)
        if opt:
            speed.optimize_codec(model)
            if model.diffusion is not None:
                speed_options.optimize_diffusion(model.diffusion, compile_mode=args.compile)
        for th in threads:
            label = "speed.optimize_codec" if opt else "engine default"
            variants.append(Variant(f"{label}, {th} thr", model, th))
    return variants


def attach_draft_vae(model: SODECModel, source: str) -> None:
    from diffusers import AutoencoderTiny

    d = model.diffusion
    tiny = AutoencoderTiny() if source == "random" else AutoencoderTiny.from_pretrained(source)
    d.set_draft_vae(tiny.eval().requires_grad_(False).to(model.device, model.dtype))


def decode_paths(model: SODECModel, requested: str) -> list[tuple[str, str, bool]]:
    """(label, mode, draft) for every decode path the model has."""
    paths = [("fidelity", "fidelity", False)]
    if model.has_diffusion:
        paths.append(("diffusion", "diffusion", False))
        if model.diffusion.tiny_vae is not None:
            paths.append(("diffusion draft (tiny VAE)", "diffusion", True))
    if requested != "all":
        wanted = set(requested.split(","))
        paths = [p for p in paths if p[0].split()[0] in wanted or p[0] in wanted]
    return paths


# ---- the benchmark ----------------------------------------------------------------------------
def run_size(args: argparse.Namespace, variants: list[Variant], pool: list[Image.Image], size: tuple[int, int],
             rows: list[list[Any]], records: list[dict[str, Any]]) -> None:
    dev = str(variants[0].model.device)
    w, h = size
    images = [make_image(pool, size, args.first_image + 9 * i) for i in range(args.num_images)]
    pixels = w * h
    cells = max(-(-h // 16), -(-w // 16))
    tiles = sorted({int(t) for t in args.tile.split(",")}) if args.tile else [codec.DEFAULT_TILE]
    tiles = [t for t in tiles if t < cells] + [t for t in tiles if t >= cells][:1]  # one untiled row at most
    ref = variants[0]

    def compress(v: Variant, im: Image.Image) -> bytes:
        return codec.compress(im, model=v.model, quality=args.quality)

    def timed_runs(call: Callable[[Variant, Any], Any], items: list[Any], key: str) -> None:
        """Warm-up, then runs interleaved across variants (so machine load hits them alike)."""
        for v in variants:
            torch.set_num_threads(v.threads)
            for _ in range(args.warmup):
                call(v, items[0])
        for _ in range(args.repeat):
            for item in items:
                for v in variants:
                    torch.set_num_threads(v.threads)
                    _, ms = time_call(lambda v=v, item=item: call(v, item), dev)
                    v.samples.setdefault(key, []).append(ms)

    timed_runs(compress, images, "enc")
    datas = [compress(ref, im) for im in images]
    bpp = float(np.mean([len(d) * 8 / pixels for d in datas]))
    enc_mem = {}
    for v in variants:
        torch.set_num_threads(v.threads)
        with PeakMemory(dev) as pm:
            compress(v, images[0])
        enc_mem[v.name] = pm.extra_mb

    # AVIF at the same rate (or a fixed quality), same images, same run
    threads = ref.threads
    q = args.avif_quality if args.avif_quality is not None else avif_quality_for(images, bpp, args.avif_speed,
                                                                               threads)
    avifs = [avif_encode(im, q, args.avif_speed, threads) for im in images]
    avif_bpp = float(np.mean([len(d) * 8 / pixels for d in avifs]))
    avif_psnr = float(np.mean([psnr(im, avif_decode(d)) for im, d in zip(images, avifs, strict=True)]))
    a_enc, a_dec = [], []
    for _ in range(args.warmup):
        avif_decode(avif_encode(images[0], q, args.avif_speed, threads))
    for _ in range(args.repeat):
        for im, d in zip(images, avifs, strict=True):
            a_enc.append(time_call(lambda im=im: avif_encode(im, q, args.avif_speed, threads))[1])
            a_dec.append(time_call(lambda d=d: avif_decode(d))[1])
    avif_enc_ms, avif_dec_ms = median(a_enc), median(a_dec)

    for label, mode, draft in decode_paths(ref.model, args.paths):
        for tile in tiles:
            def decompress(v: Variant, data: bytes, mode: str = mode, draft: bool = draft, tile: int = tile) -> Any:
                return codec.decompress(data, model=v.model, mode=mode, tile=tile, draft=draft)

            key = f"dec/{label}/{tile}"
            timed_runs(decompress, datas, key)
            for v in variants:
                torch.set_num_threads(v.threads)
                with PeakMemory(dev) as pm:  # one more decode of each image: peak memory and PSNR
                    quality = float(np.mean([psnr(im, decompress(v, d)) for im, d in zip(images, datas, strict=True)]))
                enc_ms, dec_ms = median(v.samples["enc"]), median(v.samples[key])
                tiled = f"{tile} ({tile * 16} px)" if tile < cells else "untiled"
                rows.append([f"{w}x{h}", label, tiled, v.name, bpp, quality, enc_ms, dec_ms, enc_mem[v.name],
                             pm.extra_mb, q, avif_bpp, avif_psnr, avif_enc_ms, avif_dec_ms, enc_ms / avif_enc_ms,
                             dec_ms / avif_dec_ms])
                records.append({"size": [w, h], "path": label, "tile": tile, "variant": v.name, "bpp": bpp,
                                "psnr": quality, "enc_ms": enc_ms, "dec_ms": dec_ms, "enc_peak_mb": enc_mem[v.name],
                                "dec_peak_mb": pm.extra_mb, "avif_quality": q, "avif_bpp": avif_bpp,
                                "avif_psnr": avif_psnr, "avif_enc_ms": avif_enc_ms, "avif_dec_ms": avif_dec_ms,
                                "enc_samples": v.samples["enc"], "dec_samples": v.samples[key]})
    for v in variants:
        v.samples.clear()


# ---- per-stage profile ------------------------------------------------------------------------
def profile(model: SODECModel, im: Image.Image, args: argparse.Namespace, mode: str, draft: bool,
            tile: int) -> list[tuple[str, float]]:
    """Median time of each stage of compress and decompress, replayed step by step the way codec.py
    does them (so the stages add up to about the end-to-end time)."""
    m, dev = model, str(model.device)
    stages: dict[str, list[float]] = {}

    def timed(name: str, fn: Any) -> Any:
        out, ms = time_call(fn, dev)
        stages.setdefault(name, []).append(ms)
        return out

    position = codec.quality_to_position(args.quality, m.cfg.max_rate_position)
    for it in range(args.warmup + args.repeat):
        if it == args.warmup:
            stages.clear()
        _profile_pass(m, im, position, mode, draft, tile, timed)
    return [(name, median(v)) for name, v in stages.items()]


def _profile_pass(m: SODECModel, im: Image.Image, position: int, mode: str, draft: bool, tile: int,
                  timed: Any) -> None:
    comp = m.compression
    lc = comp.codec  # the coding side

    with torch.inference_mode():
        x = timed("enc: image -> padded 8-bit tensor", lambda: codec.encoder_input(codec.normalize_mode(im),
                                                                                    lc.pad_multiple()))
        y = timed("enc: E analysis (banded)", lambda x=x: comp.analysis.forward_banded(x))
        z = timed("enc: H_a hyper analysis", lambda y=y: comp.hyper_analysis(y).double().cpu())
    z_tab, y_tab = lc.tables()
    z_sym, z_hat = timed("enc: quantise z", lambda: lc.quantize_z(z, position))
    timed("enc: exact prior P alone (fixed point)", lambda: lc.y_parameters(z_hat, position))

    y_sym, indexes = timed("enc: exact prior P (+ context passes) and quantise y",
                           lambda: lc.quantize_y(y.float(), z_hat, position))
    z_stream = timed("enc: entropy encode z", lambda: entropy.encode(
        z_sym, lc.z_indexes((1, *z_sym.shape)), z_tab))
    y_stream = timed("enc: entropy encode y", lambda: entropy.encode(lc.scan(y_sym), lc.scan(indexes), y_tab))
    data = timed("enc: container pack", lambda: container.pack(container.SDCFile(
        im.width, im.height, "RGB", bytes.fromhex(m.digest[:8]), position, z_stream, y_stream, {})))

    f = timed("dec: container parse", lambda: container.parse(data))
    pm = lc.pad_multiple()
    z_shape = lc.z_shape(-(-f.height // pm) * pm, -(-f.width // pm) * pm)
    zd = timed("dec: entropy decode z", lambda: entropy.decode(f.z_stream, lc.z_indexes(z_shape), z_tab))
    z_hat_d = lc.z_hat_from_symbols(zd.reshape(z_shape[1:]))

    yd, means_d = timed("dec: exact prior P (+ context passes) and entropy decode y",
                        lambda: lc.decode_y(f.y_stream, z_hat_d, position))
    y_hat = timed("dec: dequantise y_hat", lambda: lc.y_hat_from_symbols(yd, means_d, position))
    z_hat_f = lc.z_dequantized(z_hat_d, position).float()
    if mode == "fidelity" or not m.has_diffusion:
        x_out = timed(f"dec: D_a fidelity decoder (tile {tile})",
                      lambda: codec.decode_image(m, y_hat, z_hat_f, "fidelity", tile=tile))
    else:
        x_out = profile_diffusion(m, y_hat, z_hat_f, tile, draft, timed)
    timed("dec: to PIL (crop, uint8)", lambda: codec.to_output_image(x_out, f))


# ---- operations per pixel against the machine's convolution throughput ------------------------------
def macs(fn: Callable[[], Any]) -> int:
    """Multiply-accumulates of one call, counted by torch's FlopCounterMode (2 flops per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        fn()
    return counter.get_total_flops() // 2


def conv_throughput(device: str, repeat: int = 5) -> float:
    """GMAC/s of a plain 64 -> 64 3x3 convolution on a 1/4-resolution Kodak-sized tensor, channels_last:
    what these cores do on the decoder's most common operation."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(device, memory_format=torch.channels_last)
    x = torch.randn(1, 64, 128, 192, device=device).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        conv(x)
        ms = median([time_call(lambda: conv(x), device)[1] for _ in range(repeat)])
    return 64 * 64 * 9 * 128 * 192 / (ms * 1e6)


def mac_rows(m: SODECModel, im: Image.Image, stages: list[tuple[str, float]], device: str) -> list[list[Any]]:
    """For E and D_a on this image: MACs, MACs per pixel, the rate reached in the profile, and its
    fraction of the 3x3 convolution throughput (how far execution, not arithmetic, is the limit)."""
    comp = m.compression
    x = codec.encoder_input(codec.normalize_mode(im), comp.codec.pad_multiple())
    with torch.inference_mode():
        y = comp.analysis.forward_banded(x)
    peak = conv_throughput(device)
    times = dict(stages)
    rows = []
    for name, count, stage in (
            ("E (encoder analysis)", macs(lambda: comp.analysis.forward_banded(x)), "enc: E analysis (banded)"),
            ("D_a (fidelity decoder)", macs(lambda: m.fidelity_decoder(y.to(m.device, m.dtype))),
             next((s for s in times if s.startswith("dec: D_a")), ""))):
        ms = times.get(stage, math.nan)
        rate = count / (ms * 1e6) if ms == ms else math.nan
        rows.append([name, count / 1e9, count / (im.width * im.height), ms, rate, peak, 100 * rate / peak])
    return rows


def profile_diffusion(m: SODECModel, y_hat: torch.Tensor, z_hat: torch.Tensor, tile: int, draft: bool,
                      timed: Any) -> torch.Tensor:
    """codec.decode_image's diffusion branch, stage by stage."""
    dev, dt = m.device, m.dtype
    d = m.diffusion
    sd_tile = 2 * tile
    sd_overlap = max(1, min(2 * codec.TILE_OVERLAP, sd_tile // 4))
    with torch.inference_mode():
        x_f = timed("dec: D_a fidelity decoder", lambda: codec.decode_image(m, y_hat, z_hat, "fidelity", tile=tile))
        w = timed("dec: H_s side synthesis", lambda: d.side_synthesis(z_hat.to(dev, dt)))
        y_t = timed("dec: T_s transform", lambda: d.transform(y_hat.to(dev, dt), w))
        cond = timed("dec: ViT + F_p guidance tokens", lambda: d.guidance_tokens(x_f.to(dev, dt), 1.0))
        y0 = timed("dec: UNet one step (tiled)", lambda: tiling.tiled_apply(
            lambda p: d.denoise(p[0].to(dev, dt), cond).float().cpu(), [y_t.float().cpu()], sd_tile, sd_overlap, 1,
            y_t.shape[1]))
        name = "dec: tiny VAE decode (tiled)" if draft else "dec: VAE decode (tiled)"
        return timed(name, lambda: tiling.tiled_apply(
            lambda p: d.decode_latent(p[0].to(dev, dt), draft=draft).cpu(), [y0], sd_tile, sd_overlap, 8, 3))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model folder, bundled name or Hub id (default: the bundled one)")
    ap.add_argument("--images", default=DEFAULT_IMAGES, help="folder of Kodak images")
    ap.add_argument("--sizes", default="512x512,768x512,2048x1536")
    ap.add_argument("--num-images", type=int, default=2, help="images per size")
    ap.add_argument("--first-image", type=int, default=0, help="index of the first Kodak image used")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per image (the median is reported)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--quality", type=int, default=codec.DEFAULT_QUALITY)
    ap.add_argument("--paths", default="all", help="decode paths: all, or a comma list of fidelity,diffusion")
    ap.add_argument("--tile", default=None, help="decoder tile(s) in latent cells (16 px), comma list; "
                                                  f"default the codec's {codec.DEFAULT_TILE}")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    ap.add_argument("--threads", default=None, help="torch threads, comma list to compare (default: all cores)")
    ap.add_argument("--optimize", default="both", choices=["off", "on", "both"],
                    help="sodec_plugin.speed.optimize_codec (channels_last + fused GDN): off, on, or both")
    ap.add_argument("--compile", default=None, help="torch.compile mode for the diffusion nets of optimized variants")
    ap.add_argument("--draft-vae", default=None, help="AutoencoderTiny for draft decodes: a folder/repo or 'random'")
    ap.add_argument("--balanced-tiles", action="store_true",
                    help="decode with tiling.tiled_apply (balanced tiles), the proposed tiling.py change")
    ap.add_argument("--parallel-tiles", type=int, default=1, help="tiles decoded by this many threads at once "
                                                                  "(tiling.tiled_apply; implies its tiling)")
    ap.add_argument("--avif-quality", type=int, default=None, help="default: matched to SODEC's bpp per size")
    ap.add_argument("--avif-speed", type=int, default=6, help="libavif encoder speed (Pillow's default 6)")
    ap.add_argument("--profile", action="store_true", help="per-stage times instead of the end-to-end table")
    ap.add_argument("--json", default=None, help="also write the raw numbers here")
    args = ap.parse_args(argv)

    tiles_note = "sodec_plugin.tiling (engine)"
    if args.balanced_tiles or args.parallel_tiles > 1:
        tiles_note = (f"tiling.tiled_apply ({'balanced' if args.balanced_tiles else 'engine placement'}, "
                      f"{args.parallel_tiles} worker(s))")

        def patched(*a: Any, **k: Any) -> torch.Tensor:
            return tiling.tiled_apply(*a, **k, balanced=args.balanced_tiles, workers=args.parallel_tiles)

        tiling.tiled_apply = patched  # codec.decode_image imports it at call time
    from PIL import AvifImagePlugin, features

    variants = load_variants(args)
    AvifImagePlugin.DEFAULT_MAX_THREADS = variants[0].threads  # AVIF decodes with the same thread count
    pool = kodak(args.images)
    dev = str(variants[0].model.device)
    thr = ",".join(sorted({str(v.threads) for v in variants}))
    print(f"# SODEC codec benchmark\n\nDevice: {device_line(dev, thr)}")
    print(f"Model: {variants[0].model.identity} ({'with' if variants[0].model.has_diffusion else 'no'} diffusion "
          f"path), dtype {args.dtype}; Pillow {Image.__version__}, libavif {features.version('avif')} (speed "
          f"{args.avif_speed}, {variants[0].threads} thread(s)); "
          f"quality {args.quality}; {args.num_images} images per size x {args.repeat} runs after {args.warmup} "
          f"warm-up; tiles: {tiles_note}")
    omp = os.environ.get("OMP_WAIT_POLICY")
    print(f"Command: {'OMP_WAIT_POLICY=' + omp + ' ' if omp else ''}python {' '.join(sys.argv)}\n")
    t0 = time.perf_counter()
    if args.profile:
        for size in parse_sizes(args.sizes):
            im = make_image(pool, size, args.first_image)
            tile = int(args.tile.split(",")[0]) if args.tile else codec.DEFAULT_TILE
            for v in variants:
                torch.set_num_threads(v.threads)
                for label, mode, draft in decode_paths(v.model, args.paths):
                    stages = profile(v.model, im, args, mode, draft, tile)
                    total = sum(ms for _, ms in stages)
                    print(f"\n## {size[0]}x{size[1]}, {label}, {v.name}\n")
                    print(markdown_table(["stage", "ms (median)", "% of sum"],
                                         [[n, ms, 100 * ms / total] for n, ms in stages] + [["sum", total, 100.0]]))
                    print()
                    print(markdown_table(["network", "GMAC", "MAC per pixel", "ms", "GMAC/s", "3x3 conv GMAC/s",
                                          "% of conv throughput"], mac_rows(v.model, im, stages, dev),
                                         digits={1: 2, 2: 0, 3: 1, 4: 1, 5: 1, 6: 0}))
    else:
        rows: list[list[Any]] = []
        records: list[dict[str, Any]] = []
        for size in parse_sizes(args.sizes):
            run_size(args, variants, pool, size, rows, records)
        headers = ["size", "decode path", "tile (cells)", "variant", "bpp", "PSNR dB", "enc ms", "dec ms",
                   "enc peak MB", "dec peak MB", "AVIF q", "AVIF bpp", "AVIF PSNR", "AVIF enc ms", "AVIF dec ms",
                   "enc / AVIF", "dec / AVIF"]
        print(markdown_table(headers, rows, digits={4: 3, 5: 2, 11: 3, 12: 2, 15: 2, 16: 1}))
        if args.json:
            Path(args.json).write_text(json.dumps({"device": device_line(dev), "rows": records}, indent=1))
    print(f"\nWall time {time.perf_counter() - t0:.0f} s; load average at end {load_average()}")


if __name__ == "__main__":
    main()
