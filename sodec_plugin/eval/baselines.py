"""Classic codecs through Pillow, as rate-distortion baselines.

Every codec is one row of CODECS: Pillow format, a builder of save() keyword arguments from a quality value, and the
quality range. Higher quality always means more bits. Quality scales:

* jpeg:     libjpeg quality 1..100 (integer), 4:2:0 chroma, optimized Huffman tables. Pillow warns that >95 wastes
            bits; 100 is kept so high-rate targets can still be reached.
* webp:     libwebp lossy quality 0..100 (integer), method 6 (slowest, smallest files).
* avif:     libavif quality 0..100 (integer; maps to the AV1 quantizer), 4:2:0, speed 6 (Pillow's default).
* jpeg2000: OpenJPEG, irreversible 9/7 wavelet with the RGB->YCbCr component transform (mct=1; Pillow's default
            of no transform costs ~40% rate on photos), raw J2K codestream (no JP2 box overhead), one quality
            layer in quality_mode="dB": the quality is the layer's target PSNR in dB, 15..60 (float). Below ~15 dB
            the encoder hits its floor (headers + lowest layer) so the range stops there.
* jxl:      libjxl through pillow_jxl, quality 0..99 (integer; maps to the butteraugli distance), effort 7.
            100 would be mathematically lossless, which libjxl only accepts in lossless mode, so it is excluded.
* avif-down2, avif-down4: the image downscaled 2x or 4x (Lanczos), coded with AVIF as above, and the decode
            upscaled back (Lanczos). AVIF's files cannot get smaller than about 0.07 bpp on a photo; below that,
            this is what a user would otherwise do, so SODEC's lowest rate points are shown against it.

Encoders run single-threaded where the plugin allows it, so that timings compare like with like.
"""

from __future__ import annotations

import importlib
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import PIL
from PIL import Image

from .cache import EvalCache, digest


@dataclass(frozen=True)
class Codec:
    """One baseline codec: Pillow `format`, `kwargs(quality)` for Image.save, the quality range (higher = more bits),
    whether the quality is an integer, and the module to import first for plugins that register a format."""

    format: str
    kwargs: Callable[[float], dict[str, Any]]
    q_min: float
    q_max: float
    integer: bool = True
    plugin: str | None = None
    scale: str = ""
    downscale: int = 1  # code the image shrunk by this factor and enlarge the decode back


def _avif_kwargs(q: float) -> dict[str, Any]:
    return {"quality": int(q), "speed": 6, "max_threads": 1, "subsampling": "4:2:0"}


CODECS: dict[str, Codec] = {
    "jpeg": Codec("JPEG", lambda q: {"quality": int(q), "optimize": True, "subsampling": "4:2:0"}, 1, 100,
                  scale="libjpeg quality 1-100, 4:2:0, optimized Huffman tables"),
    "webp": Codec("WEBP", lambda q: {"quality": int(q), "method": 6}, 0, 100,
                  scale="libwebp quality 0-100, method 6 (slowest, best)"),
    "avif": Codec("AVIF", _avif_kwargs, 0, 100, scale="libavif (aom) quality 0-100, 4:2:0, speed 6, one thread"),
    "jpeg2000": Codec("JPEG2000", lambda q: {"quality_mode": "dB", "quality_layers": [float(q)],
                                             "irreversible": True, "mct": 1, "no_jp2": True},
                      15.0, 60.0, integer=False, scale="OpenJPEG target PSNR 15-60 dB, 9/7 wavelet, colour transform"),
    "jxl": Codec("JXL", lambda q: {"quality": int(q), "effort": 7, "num_threads": 1}, 0, 99, plugin="pillow_jxl",
                 scale="libjxl quality 0-99, effort 7, one thread"),
    "avif-down2": Codec("AVIF", _avif_kwargs, 0, 100, downscale=2,
                        scale="AVIF as above of the image downscaled 2x (Lanczos), decode upscaled back (Lanczos)"),
    "avif-down4": Codec("AVIF", _avif_kwargs, 0, 100, downscale=4,
                        scale="AVIF as above of the image downscaled 4x (Lanczos), decode upscaled back (Lanczos)"),
}


# The baselines `sodec eval` compares against by default: every codec above.
DEFAULT_BASELINES = tuple(CODECS)


def codec_unavailable(name: str) -> str | None:
    """None when the codec can be used here, else why not (unknown name, missing plugin, Pillow built without it)."""
    codec = CODECS.get(name)
    if codec is None:
        return f"unknown codec {name!r} (known: {', '.join(CODECS)})"
    if codec.plugin:
        try:
            importlib.import_module(codec.plugin)
        except ImportError as e:
            return f"plugin {codec.plugin} not importable ({e})"
    Image.init()
    if codec.format not in Image.SAVE:
        return f"Pillow has no encoder for {codec.format}"
    return None


def available_codecs() -> list[str]:
    """Names of the CODECS usable in this environment."""
    return [name for name in CODECS if codec_unavailable(name) is None]


def _rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def encode_decode(codec: str, image: Image.Image, quality: float, *, cache: EvalCache | None = None
                  ) -> tuple[int, np.ndarray, float, float]:
    """Encode `image` with `codec` at `quality` in memory (or take the encode from `cache`) and decode it back.

    Returns (bytes_len, decoded uint8 H x W x 3 array, encode seconds, decode seconds). Timings cover save() and
    open()+load() (and the resizes of a downscaling codec) only, not the RGB conversion of the input; a cached
    encode keeps the time it took when it was made.
    """
    reason = codec_unavailable(codec)
    if reason:
        raise RuntimeError(f"{codec}: {reason}")
    spec = CODECS[codec]
    q = min(max(float(quality), spec.q_min), spec.q_max)
    image = _rgb(image)
    key = f"{codec}|{q!r}|{spec.scale}|Pillow {PIL.__version__}|{digest(np.asarray(image))}" if cache else ""
    hit = cache.encode(key) if cache else None
    if hit is not None:
        data, enc_s = hit
    else:
        buf = io.BytesIO()
        t0 = time.perf_counter()
        small = image
        if spec.downscale > 1:
            size = (max(1, -(-image.width // spec.downscale)), max(1, -(-image.height // spec.downscale)))
            small = image.resize(size, Image.Resampling.LANCZOS)
        small.save(buf, format=spec.format, **spec.kwargs(q))
        enc_s = time.perf_counter() - t0
        data = buf.getvalue()
        if cache:
            cache.put_encode(key, data, enc_s)
    t2 = time.perf_counter()
    with Image.open(io.BytesIO(data)) as dec:
        dec.load()
        decoded = _rgb(dec)
        if spec.downscale > 1:
            decoded = decoded.resize(image.size, Image.Resampling.LANCZOS)
        t3 = time.perf_counter()
        arr = np.asarray(decoded, dtype=np.uint8).copy()
    if arr.shape[:2] != (image.height, image.width):
        raise RuntimeError(f"{codec}: decoded size {arr.shape[1]}x{arr.shape[0]} != {image.width}x{image.height}")
    return len(data), arr, enc_s, t3 - t2


@dataclass
class RateMatch:
    """The encode chosen by match_rate: its quality, real size and rate, decoded pixels and timings."""

    codec: str
    quality: float
    nbytes: int
    bpp: float
    decoded: np.ndarray = field(repr=False)
    enc_seconds: float
    dec_seconds: float
    target_bpp: float = float("nan")
    tries: int = 0


def bpp_of(nbytes: int, image: Image.Image) -> float:
    """Real file bits per pixel: 8 * bytes / (W * H)."""
    return 8.0 * nbytes / (image.width * image.height)


def _next_quality(lo: tuple[float, float] | None, hi: tuple[float, float] | None, below: list[tuple[float, float]],
                  target: float, q_min: float, q_max: float) -> float | None:
    """The next quality to try from the tightest bracket seen: (quality, bpp) just below and just above
    the target. Interpolates log(bpp) linearly in quality, kept inside the middle 80% of the bracket so it
    cannot stall on one side; None when no quality is left to try."""
    if lo is None:  # everything tried is above the target: the floor either reaches it or is the answer
        return q_min if hi is None or hi[0] > q_min else None
    if hi is None:  # everything tried is below: extrapolate from the two highest, else step halfway up
        if lo[0] >= q_max:
            return None
        guess = (lo[0] + q_max) / 2
        if len(below) >= 2 and below[-1][1] > below[-2][1] > 0:
            (q0, b0), (q1, b1) = below[-2], below[-1]
            slope = (math.log(b1) - math.log(b0)) / (q1 - q0)
            guess = min(guess, q1 + 1.25 * (math.log(target) - math.log(b1)) / slope)
        return min(q_max, max(guess, lo[0] + (q_max - lo[0]) / 8))
    (ql, bl), (qh, bh) = lo, hi
    if qh <= ql:  # a non-monotone wiggle: the closest encode seen stands
        return None
    t = (math.log(target) - math.log(bl)) / (math.log(bh) - math.log(bl)) if bl > 0 and bh > bl else 0.5
    return ql + (qh - ql) * min(0.9, max(0.1, t))


def match_rate(codec: str, image: Image.Image, target_bpp: float, *, rel_tol: float = 0.005, max_steps: int = 24,
               cache: dict[tuple[str, float], RateMatch] | None = None, store: EvalCache | None = None
               ) -> RateMatch:
    """Search `codec`'s quality for the real file rate closest to `target_bpp`.

    Assumes rate grows with quality (true up to small wiggles); every encode tried is a candidate, so the closest one
    seen is returned even where the curve is not monotonic. A target outside the codec's reach gives its lowest or
    highest quality. Stops early within `rel_tol` relative rate error. `cache` (per image) lets several targets on the
    same image reuse encodes: each search starts from the tightest bracket among them and interpolates in log rate,
    so a ladder of targets costs a few encodes each instead of a bisection of the whole range (multi-megapixel
    photos take seconds per encode). `store` keeps the encodes for later evaluations (cache.py).
    """
    reason = codec_unavailable(codec)
    if reason:
        raise RuntimeError(f"{codec}: {reason}")
    spec = CODECS[codec]
    image = _rgb(image)
    cache = {} if cache is None else cache
    tries = 0

    def trial(q: float) -> None:
        nonlocal tries
        key = (codec, q)
        if key not in cache:
            nbytes, arr, enc_s, dec_s = encode_decode(codec, image, q, cache=store)
            cache[key] = RateMatch(codec, q, nbytes=nbytes, bpp=bpp_of(nbytes, image), decoded=arr,
                                   enc_seconds=enc_s, dec_seconds=dec_s)
            tries += 1

    def seen() -> list[RateMatch]:
        return sorted((r for (c, _), r in cache.items() if c == codec), key=lambda r: r.quality)

    def closest() -> RateMatch | None:
        return min(seen(), key=lambda r: abs(r.bpp - target_bpp), default=None)

    if not seen():
        first = (spec.q_min + spec.q_max) / 2
        trial(float(round(first)) if spec.integer else first)
    for _ in range(max_steps):
        best = closest()
        if best is not None and abs(best.bpp - target_bpp) <= rel_tol * target_bpp:
            break
        pts = seen()
        below = [(r.quality, r.bpp) for r in pts if r.bpp <= target_bpp]
        above = [(r.quality, r.bpp) for r in pts if r.bpp > target_bpp]
        q = _next_quality(below[-1] if below else None, above[0] if above else None, below, target_bpp,
                          spec.q_min, spec.q_max)
        if q is None:
            break
        if spec.integer:
            q = float(round(q))
            lo_q = below[-1][0] if below else spec.q_min - 1
            hi_q = above[0][0] if above else spec.q_max + 1
            if hi_q - lo_q <= 1:
                break
            q = min(max(q, lo_q + 1), hi_q - 1)
        else:
            q = round(q, 6)
            if below and above and above[0][0] - below[-1][0] < 1e-3:
                break
        if (codec, q) in cache:
            break
        trial(q)
    best = closest()
    assert best is not None
    return replace(best, target_bpp=float(target_bpp), tries=tries)
