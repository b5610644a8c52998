"""One prepared GPU check of SODEC, made to run in at most 8 minutes on one GPU; prints one table.

    python benchmarks/gpu_check.py --device cuda --json gpu-check.json
    python benchmarks/gpu_check.py --device cpu --arch tiny          # plumbing check (the test runs it)

Sections (each row is timed with CUDA synchronisation, median of a few runs after warm-up; peak
memory is torch.cuda.max_memory_allocated reset per row on CUDA, peak RSS on the CPU):

- codec: the bundled default model through the public engine
  (`sodec_plugin.load_model` / `compress` / `decompress`) on a Kodak image and a 12 MP photo, fp32
  and bf16. The default photo is made here (a 2x2 mosaic of examples/kodim23.png, Lanczos-upscaled to
  4240x2827); pass `--photo` for a real one.
- cross-device: a file encoded on the GPU is entropy-decoded on the CPU and the symbols are compared
  with the ones the encoder wrote (and the reverse); equal symbols mean the file decodes the same on
  either device. Also the largest pixel difference of the two decodes.
- diffusion decode: the paper-size decoder with random weights (bench_diffusion.py's networks and
  speed options), 512x512, against the goal of at most 40 ms.
- training: one stage-2 and one stage-3 step (forward, backward, optimizer step) of the paper-size
  model through the trainer's own stage code, random base weights, bf16 autocast, gradient
  checkpointing on the UNet, batch 1 and 4: time and peak memory per step.

`--arch tiny` runs the same code with the tiny test networks and small images (seconds on a CPU).
`--budget-s` stops cleanly when the time budget is nearly spent: rows not run say so.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import math
import os
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

T_START = time.perf_counter()  # the budget counts from here: torch's import and CUDA start-up are in it
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # random or bundled weights only: nothing is ever downloaded

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import bench_diffusion as bd  # noqa: E402
from bench_codec import psnr  # noqa: E402
from common import PeakMemory, device_line, markdown_table, median, time_call  # noqa: E402

import sodec_plugin  # noqa: E402
from sodec_plugin import codec, container  # noqa: E402

SECTIONS = ("codec", "cross", "diffusion", "train")
SECTION_TITLES = {"codec": "codec", "cross": "cross-device", "diffusion": "diffusion decode", "train": "training"}
EXAMPLE = ROOT / "examples" / "kodim23.png"
KODAK_CANDIDATES = (ROOT.parent / "shared" / "data" / "kodak" / "kodim05.png",
                    ROOT / "shared" / "data" / "kodak" / "kodim05.png")
PHOTO_SIZE = (4240, 2827)  # 12.0 MP, 3:2
TINY_PHOTO_SIZE = (640, 427)
DECODE_GOAL_MS = 40.0


# ---- rows and the time budget -----------------------------------------------------------------
@dataclass
class Row:
    section: str
    setting: str
    ms: float = float("nan")
    peak_mb: float = float("nan")
    result: str = ""
    status: str = "ok"  # ok, fail (a check did not hold), error (an exception), skipped
    samples: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


class Check:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dev = args.device
        self.cuda = self.dev.startswith("cuda")
        self.paper = args.arch == "paper"
        self.t0 = T_START
        self.rows: list[Row] = []
        self.cross: list[dict[str, Any]] = []
        self.info: dict[str, Any] = {}

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.args.budget_s - self.elapsed()

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        ms = "n/a" if math.isnan(row.ms) else f"{row.ms:.1f} ms"
        status = "" if row.status == "skipped" else row.status + ": "
        print(f"[{self.elapsed():5.0f} s] {SECTION_TITLES.get(row.section, row.section)} | {row.setting} | {ms} | "
              f"{status}{row.result}", file=sys.stderr, flush=True)
        return row

    def skipped(self, section: str, setting: str, why: str) -> Row:
        return self.add(Row(section, setting, result=f"skipped: {why}", status="skipped"))

    def low(self, section: str, setting: str, need_s: float) -> bool:
        """True (and a 'skipped' row) when less than need_s seconds of the budget are left."""
        if self.left() < need_s:
            self.skipped(section, setting, f"time budget nearly spent ({self.elapsed():.0f} of "
                                           f"{self.args.budget_s:.0f} s used, this needs about {need_s:.0f} s)")
            return True
        return False

    def error(self, section: str, setting: str, exc: BaseException) -> Row:
        text = f"{type(exc).__name__}: {exc}".replace("\n", " ").replace("|", "/")
        traceback.print_exc(file=sys.stderr)
        free_memory()
        return self.add(Row(section, setting, result=f"ERROR: {text[:300]}", status="error"))

    def timed(self, fn: Callable[[], Any], warmup: int, repeat: int) -> tuple[list[float], Any, float]:
        """(timed samples in ms, the last result, peak MB) of warmup + repeat calls; the repeats stop
        early (keeping at least one) when the budget runs out."""
        warmup = warmup if self.args.warmup is None else self.args.warmup
        repeat = max(1, repeat if self.args.repeat is None else self.args.repeat)
        samples: list[float] = []
        out = None
        with PeakMemory(self.dev) as pm:
            for i in range(warmup + repeat):
                if samples and self.left() < 0:
                    break
                out, ms = time_call(fn, self.dev)
                if i >= warmup:
                    samples.append(ms)
        return samples, out, pm.peak_mb

    def measure(self, section: str, setting: str, fn: Callable[[], Any], warmup: int, repeat: int,
                result: Callable[[Any, float], tuple[str, str]], need_s: float) -> Row | None:
        """One row: fn timed; result(last output, median ms) -> (text, status)."""
        if self.low(section, setting, need_s):
            return None
        try:
            samples, out, peak = self.timed(fn, warmup, repeat)
            ms = median(samples)
            text, status = result(out, ms)
            return self.add(Row(section, setting, ms, peak, text, status, samples))
        except Exception as e:  # OOM and anything else: in the row, and on with the rest
            return self.error(section, setting, e)


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---- images -----------------------------------------------------------------------------------
def open_rgb(path: str | Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def kodak_path(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    return next((p for p in KODAK_CANDIDATES if p.is_file()), EXAMPLE)


def make_photo(size: tuple[int, int]) -> Image.Image:
    """examples/kodim23.png in a 2x2 mosaic (mirrored copies, so no seams), Lanczos-upscaled to size."""
    src = open_rgb(EXAMPLE)
    w, h = src.size
    mosaic = Image.new("RGB", (2 * w, 2 * h))
    mosaic.paste(src, (0, 0))
    mosaic.paste(src.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (w, 0))
    mosaic.paste(src.transpose(Image.Transpose.FLIP_TOP_BOTTOM), (0, h))
    mosaic.paste(src.transpose(Image.Transpose.ROTATE_180), (w, h))
    return mosaic.resize(size, Image.Resampling.LANCZOS)


def photo_image(c: Check) -> tuple[Image.Image, str, str]:
    """(image, short label for the rows, description for the header)."""
    if c.args.photo:
        im = open_rgb(c.args.photo)
        label = f"photo {Path(c.args.photo).name} {im.width}x{im.height}"
        return im, label, f"{label} ({im.width * im.height / 1e6:.1f} MP)"
    size = PHOTO_SIZE if c.paper else TINY_PHOTO_SIZE
    im = make_photo(size)
    label = f"photo {size[0]}x{size[1]} (generated)"
    return im, label, (f"{label}: {size[0] * size[1] / 1e6:.1f} MP made by Lanczos-upscaling a 2x2 mosaic of "
                       "examples/kodim23.png (no --photo given)")


# ---- codec ------------------------------------------------------------------------------------
def codec_section(c: Check, kodak: tuple[Image.Image, str], photo: tuple[Image.Image, str, str]) -> None:
    cuda = c.cuda
    for dname in ("fp32", "bf16"):
        try:
            m = sodec_plugin.load_model(device=c.dev, dtype=dname)
        except Exception as e:
            c.error("codec", f"load bundled model, {dname}", e)
            continue
        for (im, label), big in ((kodak, False), (photo[:2], True)):
            warmup, repeat = (1, 2) if big else ((2, 5) if cuda else (1, 2))
            need = (45 if big else 5) if c.paper else 2
            setting = f"{m.identity} {dname} on {c.dev}, {label}"
            pixels = im.width * im.height
            files: list[bytes] = []

            def rate(data: bytes, _ms: float, p: int = pixels, files: list[bytes] = files) -> tuple[str, str]:
                files.append(data)
                return f"{len(data)} B, {len(data) * 8 / p:.4f} bpp", "ok"

            row = c.measure("codec", "encode: " + setting, lambda m=m, im=im: sodec_plugin.compress(im, model=m),
                            warmup, repeat, rate, need)
            if row is None or row.status != "ok":
                continue
            data = files[-1]
            c.measure("codec", "decode: " + setting, lambda m=m, data=data: sodec_plugin.decompress(data, model=m),
                      warmup, repeat, lambda out, ms, im=im: (f"PSNR {psnr(im, out):.2f} dB (fidelity decoder)", "ok"),
                      need)


# ---- cross-device -----------------------------------------------------------------------------
@contextlib.contextmanager
def wrapped(obj: Any, name: str, wrapper: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Iterator[None]:
    """obj.name replaced by wrapper(original) for the block (an instance attribute, removed after)."""
    original = getattr(obj, name)
    obj.__dict__[name] = wrapper(original)
    try:
        yield
    finally:
        obj.__dict__.pop(name, None)


def encode_with_symbols(m: Any, im: Image.Image) -> tuple[bytes, Any]:
    """sodec_plugin.compress, and the Latents (z and y symbols) its LatentCodec.quantize made."""
    got: dict[str, Any] = {}

    def wrap(orig: Callable[..., Any]) -> Callable[..., Any]:
        def encode(*a: Any, **k: Any) -> Any:
            got["lat"] = orig(*a, **k)
            return got["lat"]
        return encode

    with wrapped(m.compression.codec, "quantize", wrap):
        data = sodec_plugin.compress(im, model=m)
    return data, got["lat"]


def decode_symbols(m: Any, data: bytes) -> tuple[torch.Tensor, np.ndarray, float]:
    """Entropy-decode a file with model m as the engine does (codec.decode_latents): the z_hat the
    prior read, the y symbols read from the stream, and the time in ms."""
    got: dict[str, Any] = {}

    def wrap(orig: Callable[..., Any]) -> Callable[..., Any]:
        def decode_y(stream: bytes, z_hat: torch.Tensor, position: int) -> Any:
            got["z_hat"] = z_hat.clone()
            out = orig(stream, z_hat, position)
            got["y"] = out[0]
            return out
        return decode_y

    f = container.parse(data)
    with wrapped(m.compression.codec, "decode_y", wrap):
        _, ms = time_call(lambda: codec.decode_latents(f, m), "cpu")
    return got["z_hat"], got["y"], ms


def max_pixel_diff(a: Image.Image, b: Image.Image) -> int:
    return int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())


def cross_section(c: Check, kodak: tuple[Image.Image, str], photo: tuple[Image.Image, str, str]) -> None:
    try:
        cpu = sodec_plugin.load_model(device="cpu", dtype="fp32")
        models = {f"{c.dev} {d}": sodec_plugin.load_model(device=c.dev, dtype=d) for d in ("fp32", "bf16")}
    except Exception as e:
        c.error("cross", "load bundled model", e)
        return
    cpu_label = "cpu fp32"
    pairs: list[tuple[str, str, bool]] = []  # (encoder, decoder, big image)
    for label in models:
        pairs += [(label, cpu_label, False), (cpu_label, label, False)]
    pairs.append((f"{c.dev} fp32", cpu_label, True))
    seen = set()
    every = {cpu_label: cpu, **models}
    cpu_files: dict[bool, bytes] = {}
    for enc_label, dec_label, big in pairs:
        if (enc_label, dec_label, big) in seen:
            continue
        seen.add((enc_label, dec_label, big))
        im, name = photo[:2] if big else kodak
        (enc_dev, enc_dt), (dec_dev, dec_dt) = enc_label.split(), dec_label.split()
        same = "" if enc_dev != dec_dev else " (same device)" if enc_dt == dec_dt else " (same device, other dtype)"
        setting = f"{name}: encode {enc_label} -> decode {dec_label}{same}"
        if c.low("cross", setting, (60 if big else 10) if c.paper else 2):
            continue
        try:
            enc_m, dec_m = every[enc_label], every[dec_label]
            data, lat = encode_with_symbols(enc_m, im)
            z_hat, y_sym, ms = decode_symbols(dec_m, data)
            z_ok = torch.equal(z_hat, dec_m.compression.codec.z_hat_from_symbols(lat.z_symbols))
            y_ok = y_sym.shape == lat.y_symbols.shape and bool(np.array_equal(y_sym, lat.y_symbols))
            y_bad = int((y_sym != lat.y_symbols).sum()) if y_sym.shape == lat.y_symbols.shape else y_sym.size
            rec: dict[str, Any] = {"image": name, "encode_device": enc_label, "decode_device": dec_label,
                                   "symbols_equal": z_ok and y_ok, "z_symbols": int(lat.z_symbols.size),
                                   "y_symbols": int(lat.y_symbols.size), "y_symbols_differing": y_bad,
                                   "file_bytes": len(data)}
            text = (f"symbols equal (z {lat.z_symbols.size}, y {lat.y_symbols.size})" if z_ok and y_ok else
                    f"symbols UNEQUAL: z {'equal' if z_ok else 'differs'}, {y_bad} of {y_sym.size} y symbols differ")
            if enc_label == cpu_label:
                cpu_files[big] = data
            elif big in cpu_files:
                identical = data == cpu_files[big]
                rec["file_identical_to_cpu_encode"] = identical
                text += "; file " + ("byte-identical to the CPU's" if identical else
                                     "differs from the CPU's (E's float rounding; each decodes on any device)")
            if not big:  # full decodes on both sides: how far apart the pixels are
                a = sodec_plugin.decompress(data, model=enc_m)
                b = sodec_plugin.decompress(data, model=dec_m)
                rec["max_pixel_diff"] = max_pixel_diff(a, b)
                text += f"; decoded pixels max diff {rec['max_pixel_diff']} (of 255)"
            c.cross.append(rec)
            row = c.add(Row("cross", setting, ms, float("nan"), text + " [time: entropy decode + prior, CPU]",
                            "ok" if rec["symbols_equal"] else "fail", [ms]))
            row.extra = rec
        except Exception as e:
            c.error("cross", setting, e)


# ---- diffusion decode -------------------------------------------------------------------------
def diffusion_section(c: Check) -> None:
    sec = "diffusion"
    dname = "fp16" if c.cuda else "fp32"  # bench_diffusion.py's defaults
    size = (512, 512) if c.paper else (128, 128)
    if c.cuda:  # as bench_diffusion.run sets them
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        torch.set_flush_denormal(True)
    ns = argparse.Namespace(device=c.dev, dtype=dname, arch="sd21" if c.paper else "tiny", tiny_vae=True,
                            channels_last=True, compile=None, cuda_graphs=False, fuse_qkv=False, fullgraph=False)
    what = "paper-size (SD 2.1 UNet + VAE, ViT-H/14, sodec-sd21), random weights" if c.paper else "TINY test nets"
    if c.low(sec, f"build {what}", 120 if c.paper else 5):
        return
    try:
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):
            m = bd.build(ns)
            notes = bd.apply_speed(m, ns)
        y_hat, z_hat = bd.inputs(m, size)
        c.info["diffusion_build_s"] = round(time.perf_counter() - t0, 1)
    except Exception as e:
        c.error(sec, f"build {what}", e)
        return
    try:
        diffusion_rows(c, m, ns, notes, y_hat, z_hat, size)
    finally:
        del m
        free_memory()


def diffusion_rows(c: Check, m: Any, ns: argparse.Namespace, notes: str, y_hat: torch.Tensor, z_hat: torch.Tensor,
                   size: tuple[int, int]) -> None:
    sec = "diffusion"
    warmup, repeat = (5, 20) if c.cuda else (1, 3)
    w, h = size

    def verdict(_out: Any, ms: float) -> tuple[str, str]:
        if not c.paper:
            return "tiny nets: plumbing only (the goal is for the paper size on a GPU)", "ok"
        if not c.cuda:
            return f"CPU (the goal of <= {DECODE_GOAL_MS:.0f} ms is for a GPU)", "ok"
        return (f"{'meets' if ms <= DECODE_GOAL_MS else 'MISSES'} the goal of <= {DECODE_GOAL_MS:.0f} ms", "ok")

    need = 15 if c.paper else 2
    base = f"{w}x{h}, {ns.dtype}, {notes}"
    for label, fn in (
        ("device-resident chain, SD VAE", lambda: bd.device_pipeline(m, y_hat, z_hat, False)),
        ("device-resident chain, tiny VAE (draft)", lambda: bd.device_pipeline(m, y_hat, z_hat, True)),
        ("engine codec.decode_image, SD VAE", lambda: codec.decode_image(m, y_hat, z_hat, "diffusion", 1.0)),
    ):
        c.measure(sec, f"{label}; {base}", fn, warmup, repeat, verdict, need)
    graphs = "manual CUDA graphs (speed_options.graph_diffusion)"
    if not c.cuda:
        c.skipped(sec, f"device-resident chain; + {graphs}", "CUDA only")
        return
    if c.low(sec, f"device-resident chain; + {graphs}", need * 2):
        return
    try:
        notes2 = bd.apply_speed(m, argparse.Namespace(**{**vars(ns), "cuda_graphs": True}))
    except Exception as e:
        c.error(sec, f"device-resident chain; + {graphs}", e)
        return
    base2 = f"{w}x{h}, {ns.dtype}, {notes2}"
    for label, draft in (("device-resident chain, SD VAE", False), ("device-resident chain, tiny VAE (draft)", True)):
        c.measure(sec, f"{label}; {base2}", lambda d=draft: bd.device_pipeline(m, y_hat, z_hat, d),
                  warmup, repeat, verdict, need)


# ---- training ---------------------------------------------------------------------------------
def base_networks(paper: bool, cfg: Any) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    """Random frozen base networks: SD 2.1-base UNet and VAE and a ViT-H/14 tower (the configs of
    bench_diffusion.py), or the tiny test networks."""
    if not paper:
        from sodec_plugin import testing

        return testing.tiny_unet(cfg), testing.tiny_vae(cfg), testing.tiny_vit(cfg)
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    return (UNet2DConditionModel(**bd.SD21_BASE_UNET), AutoencoderKL(**bd.SD_VAE),
            CLIPVisionModelWithProjection(CLIPVisionConfig(**bd.VIT_H14)))


@contextlib.contextmanager
def random_base_weights(paper: bool, cfg: Any) -> Iterator[None]:
    """While active, DiffusionDecoder.load_base attaches random base networks (built directly on the
    decoder's device) instead of downloading the configured ones: the trainer has no hook for that."""
    from sodec_plugin.models.diffusion import DiffusionDecoder

    original = DiffusionDecoder.load_base

    def load_base(self: Any, **_kwargs: Any) -> None:
        dev = self.null_tokens.device
        torch.manual_seed(0)
        try:
            with torch.device(dev):
                nets = base_networks(paper, cfg)
        except Exception:  # a constructor that does not follow the device context: build, then move
            nets = tuple(n.to(dev) for n in base_networks(paper, cfg))
        unet, vae, vit = (n.eval().requires_grad_(False) for n in nets)
        self.attach_base(unet, vae, vit)

    DiffusionDecoder.load_base = load_base  # type: ignore[method-assign]
    try:
        yield
    finally:
        DiffusionDecoder.load_base = original  # type: ignore[method-assign]


def train_section(c: Check, kodak_file: Path) -> None:
    from sodec_plugin.config import builtin_configs
    from sodec_plugin.train.recipe import builtin_recipes
    from sodec_plugin.train.trainer import Trainer

    sec = "train"
    cfg = builtin_configs()["sodec-sd21" if c.paper else "tiny"]
    rec0 = builtin_recipes()["sodec-sd21" if c.paper else "tiny"]
    crop = c.args.train_crop or (512 if c.paper else 64)
    rec = dataclasses.replace(rec0, mixed_precision="bf16", gradient_checkpointing=True,
                              stage2=dataclasses.replace(rec0.stage2, crop=crop),
                              stage3=dataclasses.replace(rec0.stage3, crop=crop))
    need_setup = 60 if c.paper else 5
    with tempfile.TemporaryDirectory(prefix="sodec-gpu-check-") as tmp:
        data = Path(tmp, "data")
        data.mkdir()
        for p in dict.fromkeys((kodak_file, EXAMPLE)):  # training crops come from these (512 px fits both)
            open_rgb(p).save(data / (p.stem + ".png"))
        for stage in (2, 3):
            title = (f"stage {stage} step (" + ("LoRA, H_s, T_s, D_a, F_p; compression frozen" if stage == 2 else
                                                "end to end") + ")")
            if c.low(sec, f"{title}: set up {cfg.name}", need_setup):
                continue
            try:
                t0 = time.perf_counter()
                with random_base_weights(c.paper, cfg), warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    t = Trainer(cfg, rec, data, Path(tmp, f"out{stage}"), stage, device=c.dev)
                setup_s = time.perf_counter() - t0
                lpips = "MSE + LPIPS" if t.stages.distortion.lpips is not None else "MSE only (LPIPS not on disk)"
                trainable = sum(p.numel() for g in t.stages.optimizers[0].param_groups for p in g["params"])
                c.info[f"stage{stage}"] = {"setup_s": round(setup_s, 1), "trainable_params": trainable,
                                           "distortion": lpips, "warnings": [str(w.message)[:200] for w in caught]}
            except Exception as e:
                c.error(sec, f"{title}: set up {cfg.name}", e)
                continue
            try:
                train_rows(c, t, rec, title, lpips, trainable)
            finally:
                del t
                free_memory()


def train_rows(c: Check, t: Any, rec: Any, title: str, lpips: str, trainable: int) -> None:
    """Timed single steps of a Trainer's stage, as Trainer.run does them (without its logging and checkpoints)."""
    t.model.train()
    steps = t.sr.steps
    crop = t.sr.crop
    warmup, repeat = (1, 3) if c.cuda else (1, 2)
    need_row = 25 if c.paper else 3
    variants = [(1, 0, ""), (4, 0, "")]
    if t.stage == 3:  # the GAN loss joins in the last gan_fraction of the steps
        variants.append((4, steps - 1, f", GAN phase (last {rec.gan_fraction:.0%} of the steps: + discriminator)"))
    for batch, first_step, phase in variants:
        counter = [first_step]

        def one_step(batch: int = batch, counter: list[int] = counter) -> Any:
            i = counter[0]
            counter[0] = min(i + 1, steps - 1)
            torch.manual_seed(rec.seed * 1_000_003 + i)
            for g in t.stages.optimizers[0].param_groups:
                g["lr"] = t.lr_at(i)
            x = t.data.batch(rec.seed, i, batch, t.rank).to(t.device)
            return t.stages.step(x, i)

        def result(res: Any, ms: float) -> tuple[str, str]:
            hours = ms / 1000 * steps / 3600
            ok = math.isfinite(res.loss)
            return (f"loss {res.loss:.4g}{'' if ok else ' (NOT finite)'}; {steps} steps (recipe) "
                    f"~ {hours:.1f} h at this batch", "ok" if ok else "fail")

        setting = (f"{title}, {t.cfg.name}, batch {batch}, {crop} px crops, bf16 autocast, UNet gradient "
                   f"checkpointing, {lpips}, {trainable / 1e6:.1f}M trainable{phase}")
        c.measure("train", setting, one_step, warmup, repeat, result, need_row)


# ---- main -------------------------------------------------------------------------------------
def header(c: Check, kodak: tuple[Image.Image, str], photo: tuple[Image.Image, str, str] | None,
           argv: list[str]) -> list[str]:
    name = torch.cuda.get_device_name(torch.device(c.dev)) if c.cuda else f"none (CPU run: {c.dev})"
    lines = [f"# SODEC GPU check ({'paper-size' if c.paper else 'TINY test'} architecture)", "",
             f"GPU: {name}; torch {torch.__version__}" + (f"; CUDA {torch.version.cuda}" if c.cuda else ""),
             f"Machine: {c.info.setdefault('machine', device_line(c.dev))}",
             f"Command: python benchmarks/gpu_check.py {' '.join(argv)}".rstrip(),
             f"Images: Kodak {kodak[1]}" + (f"; {photo[2]}" if photo else "")]
    return lines


def render(c: Check) -> str:
    rows = []
    for r in c.rows:
        ms = "error" if r.status == "error" else ("-" if math.isnan(r.ms) else f"{r.ms:.1f}")
        mem = "n/a" if math.isnan(r.peak_mb) else f"{r.peak_mb:.0f}"
        rows.append([SECTION_TITLES.get(r.section, r.section), r.setting, ms, mem,
                     ("FAIL: " if r.status == "fail" else "") + r.result])
    where = "torch.cuda.max_memory_allocated" if c.cuda else "peak RSS of the process"
    return markdown_table(["section", "setting", "time ms (median)", f"peak memory MB ({where})", "result / goal"],
                          rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    ap.add_argument("--arch", default="paper", choices=["paper", "tiny"],
                    help="paper: paper-size networks and a 12 MP photo; tiny: test networks, small images")
    ap.add_argument("--photo", default=None, help="a 12 MP photo (default: generated from examples/kodim23.png)")
    ap.add_argument("--kodak", default=None, help="a Kodak image (default: ../shared/data/kodak/kodim05.png when "
                                                  "present, else examples/kodim23.png)")
    ap.add_argument("--budget-s", type=float, default=420.0, help="stop cleanly when this much time is nearly spent")
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help=f"comma list of {', '.join(SECTIONS)}, run in the order given")
    ap.add_argument("--train-crop", type=int, default=None, help="training crop (default 512 paper, 64 tiny)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed runs per row (default: per section)")
    ap.add_argument("--repeat", type=int, default=None, help="timed runs per row (default: per section)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = set(args.sections) - set(SECTIONS)
    if bad:
        ap.error(f"unknown sections {sorted(bad)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("CUDA is not available here; use --device cpu (with --arch tiny for a quick check)", file=sys.stderr)
        return 2
    if args.device.startswith("cuda") and torch.device(args.device).index is not None:
        torch.cuda.set_device(torch.device(args.device))  # peak-memory statistics are per current device
    c = Check(args)
    kpath = kodak_path(args.kodak)
    kim = open_rgb(kpath)
    kodak = (kim, f"{kpath.name} {kim.width}x{kim.height}")
    photo = photo_image(c) if {"codec", "cross"} & set(args.sections) else None
    lines = header(c, kodak, photo, sys.argv[1:] if argv is None else list(argv))
    print("\n".join(lines), file=sys.stderr, flush=True)
    for sec in args.sections:
        try:
            if sec == "codec":
                codec_section(c, kodak, photo)  # type: ignore[arg-type]
            elif sec == "cross":
                cross_section(c, kodak, photo)  # type: ignore[arg-type]
            elif sec == "diffusion":
                diffusion_section(c)
            elif sec == "train":
                train_section(c, kpath)
        except Exception as e:  # a section's own failure: its row says so, the others still run
            c.error(sec, "section", e)
        free_memory()
    table = render(c)
    lines += ["", table, "", f"Wall time {c.elapsed():.0f} s of a {args.budget_s:.0f} s budget."]
    print("\n".join(lines), flush=True)
    if args.json:
        compared = sorted({f"{r['encode_device']} -> {r['decode_device']}" for r in c.cross})
        out = {"device": args.device, "gpu": torch.cuda.get_device_name(torch.device(args.device)) if c.cuda else None,
               "torch": torch.__version__, "arch": args.arch, "machine": c.info.get("machine"),
               "kodak": kodak[1], "photo": photo[2] if photo else None, "wall_s": round(c.elapsed(), 1),
               "budget_s": args.budget_s, "sections": args.sections, "info": c.info,
               "rows": [dataclasses.asdict(r) for r in c.rows], "cross_device": c.cross,
               "cross_device_compared": compared, "table": table}
        Path(args.json).write_text(json.dumps(out, indent=1, default=str) + "\n")
    return 1 if any(r.status in ("error", "fail") for r in c.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
