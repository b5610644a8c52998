"""Encode and decode latency, peak memory and rate of a SODEC model on Kodak images, next to
Pillow's AVIF on the same images in the same run; and (--profile) where each second of an encode and
a decode goes.

    python benchmarks/bench_codec.py --model PATH --sizes 512x512,768x512 --repeat 5
    python benchmarks/bench_codec.py --model PATH --sizes 2048x1536 --repeat 3 --tile 48,128
    python benchmarks/bench_codec.py --profile --threads 1                    # Kodak + a 12 MP photo
    python benchmarks/bench_codec.py --profile --photo my-12mp.jpg --engines old=../old-checkout,new=.

Images are real Kodak photos: 768x512 is a whole (landscape) image, smaller sizes are centre crops,
larger ones mosaics of several images. Each timing is the median of --repeat runs (per image) after
--warmup untimed runs; variants (engine defaults vs sodec_plugin.speed, thread counts) are
interleaved run by run so that a busy machine slows them alike. See benchmarks/README.md.

--profile runs every measurement in a fresh process (one per engine and image, interleaved round by
round): a cold start (imports, model load, the first decode through Pillow; `sodec decompress`), then
warm encodes and decodes whose time is split among the engine's own functions (networks, exact
prior and context, rANS, conversions), the multiply-accumulates the networks computed against the
ones they need (their untiled forward), and peak memory. `--engines NAME=PATH,...` compares
checkouts of the package side by side in one run (the default: this checkout).
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
# --profile's workers import the package of the engine they measure (see ENGINE_ENV)
ENGINE_ENV = "SODEC_BENCH_ENGINE"
sys.path.insert(0, os.environ.get(ENGINE_ENV, str(ROOT)))

import speed_options  # noqa: E402
from common import PeakMemory, device_line, load_average, markdown_table, median, parse_sizes, time_call  # noqa: E402

from sodec_plugin import codec, container, speed, tiling  # noqa: E402
from sodec_plugin.models.sodec import SODECModel  # noqa: E402

DEFAULT_IMAGES = str(ROOT.parent / "shared" / "data" / "kodak")  # the Kodak set beside the checkout


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


# ---- --profile: where the time goes, one fresh process per engine and image ------------------------
PHOTO_SIZE = (4240, 2827)  # 12.0 MP, 3:2
# (module, attribute, stage): the engine functions whose time a profile reports. Times are exclusive
# (a stage called inside another counts for itself only); what no stage covers is "other". Attributes
# an engine lacks are skipped, so an older checkout is profiled by what it has.
STAGES = (
    ("sodec_plugin.engine", "get_model", "model lookup"),
    ("sodec_plugin.codec", "encoder_input", "image -> padded 8-bit tensor"),
    ("sodec_plugin.models.compression", "Analysis.forward_banded", "E analysis transform"),
    ("sodec_plugin.models.compression", "HyperAnalysis.forward", "H_a hyper analysis"),
    ("sodec_plugin.models.latent_codec", "LatentCodec.quantize_z", "quantise z"),
    ("sodec_plugin.models.prior", "PriorSynthesis.exact", "prior P (exact, float64)"),
    ("sodec_plugin.models.context", "CheckerboardContext.exact", "context model (exact, float64)"),
    ("sodec_plugin.entropy", "build_indexes", "scale-table indexes"),
    ("sodec_plugin.models.latent_codec", "LatentCodec.code_y", "coding passes: gathers, rounding, gains"),
    ("sodec_plugin.entropy", "encode", "rANS encode (clamping, lists)"),
    ("sodec_plugin.entropy", "StreamDecoder.read", "rANS decode (lists)"),
    ("sodec_plugin.container", "pack", "container"),
    ("sodec_plugin.container", "parse", "container"),
    ("sodec_plugin.models.latent_codec", "LatentCodec.y_hat_from_symbols", "dequantise y"),
    ("sodec_plugin.codec", "fidelity_rows", "D_a fidelity decoder"),
    ("sodec_plugin.models.fidelity", "FidelityDecoder.forward", "D_a fidelity decoder"),
    ("sodec_plugin.tiling", "tiled_apply", "decoder tiles: blending"),
    ("sodec_plugin.codec", "to_bytes", "to 8-bit pixels"),
    ("sodec_plugin.codec", "to_output_image", "to PIL image"),
    ("sodec_plugin.models.diffusion", "DiffusionDecoder.guidance_tokens", "diffusion: ViT + F_p"),
    ("sodec_plugin.models.diffusion", "DiffusionDecoder.denoise", "diffusion: UNet"),
    ("sodec_plugin.models.diffusion", "DiffusionDecoder.decode_latent", "diffusion: VAE"),
)


class StageClock:
    """Exclusive time per stage, by wrapping the functions of STAGES (generators are timed per step)."""

    def __init__(self) -> None:
        import importlib
        import inspect

        self.totals: dict[str, float] = {}
        self.stack: list[list[float]] = []  # per active call: [start, time of nested calls]
        for module_name, attr, label in STAGES:
            try:
                owner: Any = importlib.import_module(module_name)
            except ImportError:
                continue
            *path, name = attr.split(".")
            for part in path:
                owner = getattr(owner, part, None)
            fn = getattr(owner, name, None) if owner is not None else None
            if fn is None or getattr(fn, "_stage_wrapped", False):
                continue
            wrapper = self._generator(fn, label) if inspect.isgeneratorfunction(fn) else self._function(fn, label)
            wrapper._stage_wrapped = True  # type: ignore[attr-defined]
            setattr(owner, name, wrapper)

    def _enter(self) -> None:
        self.stack.append([time.perf_counter(), 0.0])

    def _exit(self, label: str) -> None:
        start, nested = self.stack.pop()
        spent = time.perf_counter() - start
        self.totals[label] = self.totals.get(label, 0.0) + spent - nested
        if self.stack:
            self.stack[-1][1] += spent

    def _function(self, fn: Callable[..., Any], label: str) -> Callable[..., Any]:
        def timed(*a: Any, **k: Any) -> Any:
            self._enter()
            try:
                return fn(*a, **k)
            finally:
                self._exit(label)
        return timed

    def _generator(self, fn: Callable[..., Any], label: str) -> Callable[..., Any]:
        def timed(*a: Any, **k: Any) -> Any:
            gen = fn(*a, **k)
            while True:
                self._enter()
                try:
                    item = next(gen)
                except StopIteration:
                    return
                finally:
                    self._exit(label)
                yield item
        return timed

    def run(self, fn: Callable[[], Any]) -> tuple[dict[str, float], float]:
        """Stage times (ms, exclusive, with "other") and the total of one call of fn."""
        self.totals = {}
        t0 = time.perf_counter()
        fn()
        total = time.perf_counter() - t0
        stages = {k: v * 1e3 for k, v in self.totals.items()}
        stages["other"] = total * 1e3 - sum(stages.values())
        return stages, total * 1e3


def network_macs(m: Any, op: str, image: Image.Image | None, data: bytes | None) -> dict[str, dict[str, float]]:
    """GMAC that E (encode) or D_a (decode) computed as the engine runs it, and the GMAC its untiled
    forward needs (counted on a small input and scaled by area: every layer's count is proportional
    to its output's area)."""
    comp = m.compression
    with torch.inference_mode():
        if op == "encode":
            coded = codec.normalize_mode(image)
            if data is not None and hasattr(codec, "downscaled"):  # what the streams code (resampling)
                coded = codec.downscaled(coded, container.parse(data).resample)
            x = codec.encoder_input(coded, comp.codec.pad_multiple())
            need = macs(lambda: comp.analysis(torch.rand(1, 3, 128, 128))) * x.shape[-2] * x.shape[-1] / 128**2
            return {"E (analysis)": {"needed": need / 1e9, "computed": macs(
                lambda: comp.analysis.forward_banded(x)) / 1e9}}
        f = container.parse(data)
        y_hat, z_hat = codec.decode_latents(f, m)
        need = macs(lambda: m.fidelity_decoder(torch.randn(1, y_hat.shape[1], 8, 8))) * y_hat[0, 0].numel() / 64

        def decode() -> Any:
            try:  # this engine's decoder, writing 8-bit pixels as decode_file does
                width, height = getattr(f, "coded_size", (f.width, f.height))  # engines before resampling
                return codec.decode_image(m, y_hat, z_hat, "fidelity", out=np.empty((height, width, 3), np.uint8))
            except TypeError:  # an engine without that output
                return codec.decode_image(m, y_hat, z_hat, "fidelity")

        return {"D_a (fidelity decoder)": {"needed": need / 1e9, "computed": macs(decode) / 1e9}}


def macs(fn: Callable[[], Any]) -> int:
    """Multiply-accumulates of one call, counted by torch's FlopCounterMode (2 flops per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        fn()
    return counter.get_total_flops() // 2


def profile_worker(args: argparse.Namespace) -> None:
    """One engine, one operation on one file: warm runs split into stages, peak memory, MACs (JSON)."""
    import sodec_plugin as sp

    torch.set_num_threads(args.threads_n)
    m = sp.load_model(args.model)
    image, data = None, None
    if args.op == "encode":
        with Image.open(args.image) as im:
            image = im.convert("RGB")

        def run() -> Any:
            return sp.compress(image, model=m, quality=args.quality)
    else:
        data = Path(args.image).read_bytes()

        def run() -> Any:
            return sp.decompress(data, model=m)

    clock = StageClock()
    for _ in range(args.warmup):
        run()
    runs = [clock.run(run) for _ in range(args.repeat)]
    with PeakMemory() as pm:
        out = run()
    if args.op == "encode":
        data = out  # the file says what the streams code (its resampling)
    labels = sorted({k for stages, _ in runs for k in stages})
    print(json.dumps({"engine": str(Path(sp.__file__).resolve().parent.parent),
                      "total_ms": median([t for _, t in runs]), "peak_mb": pm.peak_mb, "extra_mb": pm.extra_mb,
                      "stages": {k: median([s.get(k, 0.0) for s, _ in runs]) for k in labels},
                      "macs": network_macs(m, args.op, image, data)}))


COLD_SCRIPT = """
import json, sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
torch.set_num_threads({threads})
from PIL import Image
import pillow_codec
t2 = time.perf_counter()
im = Image.open({path!r})
import sodec_plugin
sodec_plugin.load_model()
t3 = time.perf_counter()
im.load()
t4 = time.perf_counter()
print(json.dumps({{"import torch": t1 - t0, "import PIL + pillow_codec": t2 - t1, "open + model load": t3 - t2,
                  "decode": t4 - t3, "inside": t4 - t0,
                  "compressai imported": any(k.startswith("compressai") for k in sys.modules)}}))
"""


ENCODE_SCRIPT = """
import sys
import sodec_plugin
from PIL import Image
with Image.open({src!r}) as im:
    data = sodec_plugin.compress(im.convert("RGB"), model={model!r}, quality={quality!r})
open({dst!r}, "wb").write(data)
"""


def engine_compress(engine: Path, src: Path, dst: Path, quality: float, model: str | None) -> Path:
    """`src` coded by the engine at `engine` (a fresh process importing that engine's package; run
    outside any checkout, whose folder `python -c` would put first on the path)."""
    import subprocess
    import tempfile

    env = {**os.environ, "PYTHONPATH": str(engine)}
    subprocess.run([sys.executable, "-c", ENCODE_SCRIPT.format(src=str(src), dst=str(dst), model=model,
                                                              quality=quality)],
                   env=env, capture_output=True, text=True, check=True, cwd=tempfile.gettempdir())
    return dst


def cold_start(engine: Path, path: Path, threads: int) -> dict[str, Any]:
    """A fresh process decoding one file through Pillow, stage by stage, and `sodec decompress` of it."""
    import subprocess
    import tempfile

    env = {**os.environ, "PYTHONPATH": str(engine), "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", COLD_SCRIPT.format(path=str(path), threads=threads)], env=env,
                         capture_output=True, text=True, check=True, cwd=tempfile.gettempdir())
    wall = time.perf_counter() - t0
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["interpreter start + exit"] = wall - r.pop("inside")
    r["wall (python -c ...)"] = wall
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import sys; from sodec_plugin.cli import main; sys.exit(main())",
                        "decompress", str(path), "-o", str(Path(tmp) / "out.png")], env=env, check=True,
                       capture_output=True, cwd=tmp)
        r["sodec decompress (wall)"] = time.perf_counter() - t0
    return r


def run_profile(args: argparse.Namespace) -> None:
    import subprocess
    import tempfile

    engines = {name: Path(path).resolve() for name, path in
               (part.split("=", 1) for part in (args.engines or f"this={ROOT}").split(","))}
    threads = int(args.threads.split(",")[0]) if args.threads else 1
    tmp = Path(tempfile.mkdtemp(prefix="sodec-bench-"))
    kodak_file = Path(args.kodak) if args.kodak else next(
        p for p in (Path(args.images) / "kodim05.png", ROOT / "examples" / "kodim23.png") if p.is_file())
    if args.photo:
        photo_file, photo_note = Path(args.photo), f"{args.photo} (given)"
    else:
        photo_file = tmp / "photo-12mp.png"
        make_photo(PHOTO_SIZE).save(photo_file)
        photo_note = (f"{PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} made by Lanczos-upscaling a 2x2 mosaic of "
                      "examples/kodim23.png (pass --photo for a real one)")
    images = {"Kodak": kodak_file, "12 MP photo": photo_file}
    print(f"# Where the time goes\n\nDevice: {device_line('cpu', str(threads))}")
    print(f"Engines: {', '.join(f'{n} = {p}' for n, p in engines.items())}; quality {args.quality}; "
          f"{args.repeat} timed runs after {args.warmup} warm-up per process, {args.rounds} rounds of fresh "
          f"processes interleaved across engines (medians over rounds)")
    print(f"Images: Kodak = {kodak_file}; 12 MP photo = {photo_note}")
    omp = os.environ.get("OMP_WAIT_POLICY")
    print(f"Command: {'OMP_WAIT_POLICY=' + omp + ' ' if omp else ''}python {' '.join(sys.argv)}\n")

    # Each engine decodes the files it coded: an encoder change (the resampling ladder) writes other
    # files at the same quality, which an older decoder may not read.
    coded = {(label, name): engine_compress(path, file, tmp / f"{file.stem}-{name}.sdc", args.quality, args.model)
             for label, file in images.items() for name, path in engines.items()}
    cold: dict[str, list[dict[str, Any]]] = {n: [] for n in engines}
    warm: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for _ in range(args.rounds):
        for name, path in engines.items():
            cold[name].append(cold_start(path, coded["Kodak", name], threads))
        for label, file in images.items():
            for op in ("encode", "decode"):
                for name, path in engines.items():  # one fresh process each: its peak memory is the operation's
                    source = file if op == "encode" else coded[label, name]
                    cmd = [sys.executable, str(Path(__file__).resolve()), "--profile-worker", "--op", op,
                           "--image", str(source), "--quality", str(args.quality), "--repeat", str(args.repeat),
                           "--warmup", str(args.warmup), "--threads", str(threads)]
                    env = {**os.environ, ENGINE_ENV: str(path), "OMP_NUM_THREADS": str(threads)}
                    out = subprocess.run(cmd + (["--model", args.model] if args.model else []), env=env,
                                         capture_output=True, text=True, check=True)
                    warm.setdefault((label, op, name), []).append(json.loads(out.stdout.strip().splitlines()[-1]))

    names = list(engines)
    print("## Cold start: a fresh process decodes one Kodak file (seconds)\n")
    keys = [k for k in cold[names[0]][0] if k != "compressai imported"]
    rows = [[k] + [median([r[k] for r in cold[n]]) for n in names] for k in keys]
    rows.append(["imports compressai"] + [str(cold[n][0]["compressai imported"]) for n in names])
    print(markdown_table(["stage"] + names, rows, digits={i + 1: 2 for i in range(len(names))}))
    for label, file in images.items():
        with Image.open(file) as im:
            size = im.size
        sizes = ", ".join(f"{n} {coded[label, n].stat().st_size} bytes" for n in names)
        print(f"\n## {label} ({size[0]}x{size[1]}; {sizes} at quality {args.quality}), warm\n")
        for op in ("encode", "decode"):
            runs = {n: warm[(label, op, n)] for n in names}
            stages = sorted({k for n in names for r in runs[n] for k in r["stages"]},
                            key=lambda k: -median([r["stages"].get(k, 0.0) for r in runs[names[-1]]]))
            rows = [[k] + [median([r["stages"].get(k, 0.0) for r in runs[n]]) for n in names] for k in stages]
            rows.append([f"**{op} total (ms)**"] + [median([r["total_ms"] for r in runs[n]]) for n in names])
            rows.append(["peak RSS of the process (MB)"] + [median([r["peak_mb"] for r in runs[n]]) for n in names])
            rows.append(["peak above the loaded model (MB)"] + [median([r["extra_mb"] for r in runs[n]])
                                                                for n in names])
            print(markdown_table([f"{op} stage (ms, median)"] + names, rows))
            print()
            for net, first in runs[names[0]][0]["macs"].items():
                need = first["needed"]
                done = [runs[n][0]["macs"][net]["computed"] for n in names]
                print(markdown_table(["network", "GMAC needed (untiled forward)"]
                                     + [f"GMAC computed ({n})" for n in names] + [f"computed / needed ({n})"
                                                                                   for n in names],
                                     [[net, need] + done + [d / need for d in done]],
                                     digits={i: 2 for i in range(1, 2 + 2 * len(names))}))
                print()
    if args.json:
        Path(args.json).write_text(json.dumps({"cold": cold, "warm": {"|".join(k): v for k, v in warm.items()}},
                                              indent=1))


def make_photo(size: tuple[int, int]) -> Image.Image:
    """The GPU check's generated 12 MP photo (benchmarks/gpu_check.py), so both speak of one image."""
    from gpu_check import make_photo as generated

    return generated(size)


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
    ap.add_argument("--profile", action="store_true",
                    help="where the time goes: a cold start, then warm encodes and decodes of --kodak and --photo "
                         "split into stages, MACs and peak memory, each in fresh processes")
    ap.add_argument("--kodak", default=None, help="--profile's Kodak image (default: kodim05 from --images, else "
                                                   "examples/kodim23.png)")
    ap.add_argument("--photo", default=None, help="--profile's large photo (default: a generated 12 MP one)")
    ap.add_argument("--engines", default=None,
                    help="--profile: NAME=PATH,... checkouts whose sodec_plugin to compare (default: this one)")
    ap.add_argument("--rounds", type=int, default=3, help="--profile: rounds of fresh processes")
    ap.add_argument("--profile-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--image", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--op", default=None, choices=["encode", "decode"], help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None, help="also write the raw numbers here")
    args = ap.parse_args(argv)
    if args.profile_worker:
        args.threads_n = int(args.threads or 1)
        profile_worker(args)
        return
    if args.profile:
        run_profile(args)
        return

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
