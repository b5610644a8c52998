"""What the comparison page computes, without Gradio: an upload opened as SODEC would code it, SODEC's file and
decode (at a quality, or the highest quality that fits a size), the other codecs rate-matched to SODEC's file as
`sodec eval` matches them, the scores, and 1:1 crops of one region of every decode.

Every codec codes the same colour pixels: an image with alpha keeps its alpha plane exactly in the .sdc (as
`sodec compress` does), and the others are matched to the size of SODEC's colour data, without that plane.
"""

from __future__ import annotations

import io
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .. import container
from ..container import Chunk, FormatError
from ..eval.baselines import CODECS, available_codecs, bpp_of, match_rate
from ..eval.cache import EvalCache, digest
from ..eval.scores import WHOLE_IMAGE_METRICS, Scorer
from ..metrics import METRICS, MS_SSIM_MIN_SIDE, metric_unavailable
from ..rates import check_effort, check_quality, point_quality, resampling_note

Progress = Callable[[float, str], None]
log = logging.getLogger("sodec.demo")

# The codecs people compare SODEC with, and AVIF of the downscaled image (what a user would do below AVIF's
# smallest files; every CODECS entry whose name starts with this prefix).
DEFAULT_CODECS = ("avif", "jxl", "webp", "jpeg")
DOWNSCALED_AVIF = "avif-down"
FORMAT_NAMES = {"AVIF": "AVIF", "JXL": "JPEG XL", "WEBP": "WebP", "JPEG": "JPEG", "JPEG2000": "JPEG 2000"}
# A codec whose closest file is further than this from SODEC's size is marked as not reaching it.
MATCH_SLACK = 0.05
# Encodes of the last image are kept for a quality change, up to this many pixels (each holds a decode).
CACHE_MAX_PIXELS = 2_000_000
# The side of the 1:1 crops, in pixels.
CROP_SIDE = 192


class UploadError(ValueError):
    """An upload that cannot be compared; the message says why, in words for the page."""


@dataclass
class Upload:
    """An opened upload: an image in a mode SODEC stores (RGB, L, RGBA, LA), or the bytes of a .sdc file."""

    name: str
    image: Image.Image | None = None
    sdc: bytes | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Coded:
    """One picture on the page: the original or a codec's decode, with what the table says of it."""

    key: str  # "original", "sodec" or a CODECS name
    label: str
    pixels: np.ndarray | None  # H x W x 3 uint8 colour, what is shown and scored; None when the codec failed
    nbytes: int | None = None
    setting: str = ""
    enc_s: float | None = None
    dec_s: float | None = None
    note: str = ""


@dataclass
class Result:
    """Everything the page shows after one run."""

    entries: list[Coded]  # the original first (when there is one), then SODEC, then the other codecs
    sdc: bytes
    decoded: Image.Image  # SODEC's decode as a viewer gets it (with alpha when the file has it)
    columns: list[str]
    rows: list[list[str]]
    summary: str
    notes: list[str]


def default_codecs() -> list[str]:
    """The codecs compared unless the user picks others: DEFAULT_CODECS and the downscaled AVIFs, where usable."""
    usable = available_codecs()
    return [n for n in DEFAULT_CODECS if n in usable] + [n for n in usable if n.startswith(DOWNSCALED_AVIF)]


def codec_label(name: str) -> str:
    spec = CODECS[name]
    base = FORMAT_NAMES.get(spec.format, spec.format)
    down = getattr(spec, "downscale", 1)
    return f"{base} of the 1/{down} size image" if down > 1 else base


# ---- the upload ---------------------------------------------------------------------------------------------
def open_upload(path: str | Path, name: str | None = None) -> Upload:
    """Open an uploaded file as `sodec compress` would: Pillow's decompression-bomb rule, the first frame, turned
    upright by its EXIF orientation, converted to a mode SODEC stores. Raises UploadError with a clear message."""
    path = Path(path)
    name = name or path.name
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head[:3] == container.MAGIC:
        return _open_sdc(path.read_bytes(), name)
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:
                frames = getattr(im, "n_frames", 1)
                deep = im.mode in ("RGB", "RGBA") and any(";16" in str(getattr(t, "args", t[-1])) for t in im.tile)
                im.load()
                src_mode = im.mode
                image = ImageOps.exif_transpose(im)
                turned = image.size != im.size or bool(im.getexif().get(0x0112, 1) != 1)
        except Image.DecompressionBombError as e:
            raise UploadError(f"{name} is too large to open safely: {e} (Pillow's decompression-bomb limit, "
                              "Image.MAX_IMAGE_PIXELS)") from e
        except UnidentifiedImageError as e:
            raise UploadError(f"{name} is not an image Pillow can open, nor a .sdc file") from e
        except Exception as e:  # noqa: BLE001 - a damaged file may fail in any decoder; the page says so
            raise UploadError(f"{name} could not be read, it may be truncated or damaged: {e}") from e
    if any(issubclass(w.category, Image.DecompressionBombWarning) for w in caught):
        notes.append(f"{image.width}x{image.height} is above Pillow's decompression-bomb warning size; it is "
                     "coded anyway, slowly")
    if deep:
        notes.append("its 16 bits per channel are read as 8, as Pillow (and so `sodec compress`) reads them")
    if frames > 1:
        notes.append(f"the first of its {frames} frames is compared")
    if turned:
        notes.append("turned upright as its EXIF orientation says")
    from ..codec import normalize_mode

    try:
        image = normalize_mode(image)
    except ValueError as e:
        raise UploadError(f"{name}: {e}") from e
    if image.mode != src_mode:
        how = " (scaled to 8 bits)" if src_mode.startswith(("I", "F")) else ""
        notes.append(f"its {src_mode} pixels are coded as {image.mode}{how}, as SODEC stores them, and every "
                     "codec gets the same pixels")
    if "A" in image.getbands():
        notes.append("its alpha plane is kept exactly in the .sdc; the page shows and compares the colour, and the "
                     "other codecs get as many bytes as SODEC's colour data")
    if min(image.size) < MS_SSIM_MIN_SIDE:
        notes.append(f"MS-SSIM needs at least {MS_SSIM_MIN_SIDE} px on each side, so it is left out")
    return Upload(name, image=image, notes=notes)


def _open_sdc(data: bytes, name: str) -> Upload:
    try:
        f = container.parse(data)
    except FormatError as e:
        raise UploadError(f"{name} is a damaged .sdc file: {e}") from e
    try:
        container.check_pixels(f.width, f.height, warn=False)
    except Image.DecompressionBombError as e:
        raise UploadError(f"{name} is too large to decode safely: {e}") from e
    return Upload(name, sdc=data, notes=[f"{name} is a .sdc file: it is shown decoded, with nothing to compare it "
                                         "against (the original is not in the file)"])


# ---- SODEC ------------------------------------------------------------------------------------------------------
_warmed: set[tuple[str, str]] = set()


def load_model(name: str | None, device: Any = None) -> Any:
    """The engine's shared model, run once on a small image so that the first timings shown are the codec's, not
    the imports' and first calls' (as `sodec eval` warms up)."""
    from .. import codec
    from ..engine import get_model

    m = get_model(name or None, device=device)
    key = (m.digest, str(m.device))
    if key not in _warmed:
        codec.decompress(codec.compress(Image.new("RGB", (64, 64)), model=m), model=m)
        _warmed.add(key)
    return m


def quality_for_size(image: Image.Image, max_bytes: int, *, model: Any, effort: int,
                     progress: Progress | None = None) -> tuple[int, bytes, float]:
    """The highest integer quality whose file fits in `max_bytes` (1 when none fits), its file and encode
    seconds: a bisection over the qualities, about 8 encodes."""
    from ..codec import compress

    files: dict[int, tuple[bytes, float]] = {}

    def fits(q: int) -> bool:
        if progress is not None:
            progress(0.3 * len(files) / 8, f"SODEC: trying quality {q} for {max_bytes:,} bytes")
        t0 = time.perf_counter()
        data = compress(image, model=model, quality=q, effort=effort)
        files[q] = (data, time.perf_counter() - t0)
        return len(data) <= max_bytes

    lo, hi = 1, 100
    if not fits(lo):
        return lo, *files[lo]
    if fits(hi):
        return hi, *files[hi]
    while hi - lo > 1:  # fits(lo) and not fits(hi)
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo, *files[lo]


def colour_bytes(data: bytes) -> int:
    """The size of a .sdc file without its alpha plane: what the colour costs, which the other codecs match."""
    f = container.parse(data, verify=False)
    if Chunk.ALPHA not in f.chunks:
        return len(data)
    colour = replace(f, mode=f.mode.rstrip("A") or f.mode, chunks={k: v for k, v in f.chunks.items()
                                                                   if k != Chunk.ALPHA})
    return len(container.pack(colour))


def _rgb_array(image: Image.Image) -> np.ndarray:
    return np.array(image.convert("RGB"), dtype=np.uint8)  # a writable copy: torch-based metrics warn on views


# ---- the page's work --------------------------------------------------------------------------------------------
class Comparer:
    """The page's worker: keeps the scores and the other codecs' encodes of the last image, so that a quality
    change re-encodes only what changed. One run at a time (the page queues them)."""

    def __init__(self, device: Any = None) -> None:
        self.device = device
        self.scores = EvalCache(None)
        self._rate_key: str | None = None
        self._rate_cache: dict = {}

    @staticmethod
    def metrics(perceptual: bool = True) -> list[str]:
        """The metrics scored here: PSNR and MS-SSIM, and the perceptual ones that are installed."""
        names = [m for m in METRICS if metric_unavailable(m) is None]
        return [m for m in names if perceptual or m in WHOLE_IMAGE_METRICS]

    def _cache_for(self, ref: np.ndarray) -> dict:
        if ref.shape[0] * ref.shape[1] > CACHE_MAX_PIXELS:
            return {}
        key = digest(ref)
        if key != self._rate_key:
            self._rate_key, self._rate_cache = key, {}
        return self._rate_cache

    def run(self, upload: Upload, *, model: str | None = None, quality: float | None = None,
            target_kb: float | None = None, effort: int = 0, mode: str = "auto", guidance: float | None = None,
            codecs: Sequence[str] | None = None, perceptual: bool = True,
            progress: Progress | None = None) -> Result:
        """SODEC at `quality` (or the highest quality within `target_kb` kilobytes of 1,000 bytes) and `codecs`
        at SODEC's size, scored; decoded at `guidance` (None: the model's default) where the model reads it."""
        say = progress or (lambda fraction, what: None)
        if upload.sdc is not None:
            return self._show_sdc(upload, model=model, mode=mode, guidance=guidance, say=say)
        assert upload.image is not None
        check_effort(effort)
        image = upload.image
        say(0.0, "loading the model")
        m = load_model(model, self.device)
        from .. import codec

        if target_kb is not None:
            if not target_kb > 0:
                raise UploadError(f"the target size must be a positive number of KB, got {target_kb}")
            q, data, enc_s = quality_for_size(image, int(target_kb * 1000), model=m, effort=effort, progress=say)
        else:
            check_quality(quality)
            say(0.05, "SODEC: encoding")
            t0 = time.perf_counter()
            data = codec.compress(image, model=m, quality=quality, effort=effort,
                                  progress=lambda done, total: say(0.05 + 0.25 * done / total, "SODEC: encoder search"))
            q, enc_s = quality, time.perf_counter() - t0
        say(0.3, "SODEC: decoding")
        f = container.parse(data)
        t0 = time.perf_counter()
        decoded = codec.decode_file(f, model=m, mode=_mode_for(m, mode), guidance=guidance)
        dec_s = time.perf_counter() - t0
        ref = _rgb_array(image)
        colour = colour_bytes(data)
        notes = [f"{len(data) - colour:,} more bytes hold the alpha plane"] if colour != len(data) else []
        if target_kb is not None and len(data) > target_kb * 1000:
            notes.append(f"its smallest file is larger than {target_kb:g} KB")
        sodec = Coded("sodec", f"SODEC ({m.cfg.name})", _rgb_array(decoded), nbytes=colour,
                      setting=f"quality {q:g}" + (f", effort {effort}" if effort else "") + resampling_note(f.resample)
                      + _guidance_setting(m, mode, guidance), enc_s=enc_s, dec_s=dec_s, note="; ".join(notes))
        entries = [Coded("original", "Original", ref, setting=f"{image.width}x{image.height} {image.mode}"), sodec]
        names = default_codecs() if codecs is None else list(codecs)
        rgb = image if image.mode == "RGB" else Image.fromarray(ref, "RGB")
        entries += self._match(rgb, bpp_of(colour, rgb), names, self._cache_for(ref),
                               lambda i, what: say(0.35 + 0.45 * i / max(1, len(names)), what))
        columns, rows = self._table(ref, entries, self.metrics(perceptual),
                                    say=lambda i, what: say(0.8 + 0.2 * i / len(entries), what))
        summary = (f"**{sodec.label}**, {sodec.setting}: {len(data):,} bytes, "
                   f"{bpp_of(len(data), image):.4f} bpp. The other codecs are set to the same size.")
        say(1.0, "done")
        return Result(entries, data, decoded, columns, rows, summary, list(upload.notes))

    def _match(self, rgb: Image.Image, target_bpp: float, names: Sequence[str], cache: dict,
               say: Callable[[int, str], None]) -> list[Coded]:
        out = []
        for i, name in enumerate(names):
            label = codec_label(name) if name in CODECS else name
            say(i, f"{label} at SODEC's size")
            try:
                m = match_rate(name, rgb, target_bpp, cache=cache)
            except Exception as e:  # noqa: BLE001 - one codec failing (e.g. on a 1-pixel-wide strip) is one row
                out.append(Coded(name, label, None, note=f"failed: {e}"))
                continue
            spec = CODECS[name]
            off = m.bpp / target_bpp - 1
            note = ""
            if off > MATCH_SLACK:
                note = f"{'smallest' if m.quality <= spec.q_min else 'closest'} file: {off:.0%} larger"
            elif off < -MATCH_SLACK:
                note = f"{'largest' if m.quality >= spec.q_max else 'closest'} file: {-off:.0%} smaller"
            out.append(Coded(name, label, m.decoded, nbytes=m.nbytes, setting=f"quality {m.quality:g}",
                             enc_s=m.enc_seconds, dec_s=m.dec_seconds, note=note))
        return out

    def _table(self, ref: np.ndarray | None, entries: list[Coded], metrics: list[str],
               say: Callable[[int, str], None] | None = None) -> tuple[list[str], list[list[str]]]:
        scorer = Scorer(metrics, cache=self.scores) if ref is not None else None
        shown = scorer.metrics if scorer is not None else []
        columns = ["codec", "setting", "bytes", "bpp", *(METRICS[m].label for m in shown),
                   "encode (s)", "decode (s)", "note"]
        rows = []
        for i, e in enumerate(entries):
            if e.key == "original":
                continue
            if say is not None:
                say(i, f"scoring {e.label}")
            scores = self._scores(scorer, ref, e.pixels) if scorer is not None and e.pixels is not None else {}
            h, w = (e.pixels.shape[:2] if e.pixels is not None else ref.shape[:2] if ref is not None else (0, 0))
            rows.append([e.label, e.setting, _num(e.nbytes, ",d"),
                         _num(8 * e.nbytes / (w * h) if e.nbytes and w else None, ".4f"),
                         *(_num(scores.get(m), ".4f" if m == "ms_ssim" else ".2f") for m in shown),
                         _num(e.enc_s, ".3f"), _num(e.dec_s, ".3f"), e.note])
        return columns, rows

    def _scores(self, scorer: Scorer, ref: np.ndarray, pixels: np.ndarray) -> dict[str, float]:
        """The scores, or PSNR and MS-SSIM alone where a perceptual metric cannot score the image (CVVDP fails on
        a picture 1 pixel high): the other columns then say "-" rather than the run failing."""
        try:
            return scorer(ref, pixels)
        except Exception as e:  # noqa: BLE001 - an optional metric's own failure
            log.warning("perceptual metrics failed on a %dx%d picture: %s: %s", ref.shape[1], ref.shape[0],
                        type(e).__name__, e)
            return Scorer(WHOLE_IMAGE_METRICS, cache=self.scores)(ref, pixels)

    def _show_sdc(self, upload: Upload, *, model: str | None, mode: str, guidance: float | None,
                  say: Progress) -> Result:
        """A .sdc upload, decoded with the model it names (or the page's model when the file is that model's)."""
        from .. import codec

        assert upload.sdc is not None
        f = container.parse(upload.sdc)
        say(0.1, "loading the model")
        chosen = load_model(model, self.device)
        same = container.model_id_hex(chosen.digest) == f.model_hex
        m = codec.model_for_file(f, model=chosen if same else None, device=self.device)
        say(0.3, "decoding")
        t0 = time.perf_counter()
        decoded = codec.decode_file(f, model=m, mode=_mode_for(m, mode), guidance=guidance)
        dec_s = time.perf_counter() - t0
        header = codec.read_header(upload.sdc)
        named = header["model_name"] or header["model_id"]
        quality = point_quality(f.resample, f.rate_position, m.cfg.max_rate_position, width=f.width, height=f.height)
        entry = Coded("sodec", f"SODEC ({named})", _rgb_array(decoded),
                      nbytes=len(upload.sdc),
                      setting=f"quality {quality:g}" + resampling_note(f.resample)
                      + _guidance_setting(m, mode, guidance),
                      dec_s=dec_s)
        columns, rows = self._table(None, [entry], [])
        summary = (f"**{upload.name}**: {f.width}x{f.height} {f.mode}, {len(upload.sdc):,} bytes, "
                   f"{header['bits_per_pixel']:.4f} bpp{resampling_note(f.resample)}, model {named}.")
        say(1.0, "done")
        return Result([entry], upload.sdc, decoded, columns, rows, summary, list(upload.notes))


def _mode_for(model: Any, mode: str) -> str:
    """The decode path asked for, where the model has a choice; the page hides the control where it has none."""
    return mode if model.has_diffusion else "auto"


def _guidance_setting(model: Any, mode: str, guidance: float | None) -> str:
    """", guidance G" where the decode read the guidance (the table says what SODEC's picture was made with)."""
    from ..codec import guidance_is_read, resolve_guidance

    if not guidance_is_read(model, _mode_for(model, mode)):
        return ""
    return f", guidance {resolve_guidance(model, guidance):.2f}"


def _num(value: float | None, fmt: str) -> str:
    if value is None or value != value:  # None or nan
        return "-"
    return format(value, fmt)


# ---- crops --------------------------------------------------------------------------------------------------
def crop_box(width: int, height: int, x: float, y: float, side: int = CROP_SIDE) -> tuple[int, int, int, int]:
    """The side x side box centred on (x, y), moved inside the image (the whole side when the image is smaller)."""
    w, h = min(side, width), min(side, height)
    left = min(max(0, int(x) - w // 2), width - w)
    top = min(max(0, int(y) - h // 2), height - h)
    return left, top, left + w, top + h


def crops(entries: Sequence[Coded], x: float, y: float, side: int = CROP_SIDE) -> list[tuple[np.ndarray, str]]:
    """(1:1 crop, caption) of every picture, all of the same region."""
    shown = [e for e in entries if e.pixels is not None]
    if not shown:
        return []
    height, width = shown[0].pixels.shape[:2]
    left, top, right, bottom = crop_box(width, height, x, y, side)
    return [(e.pixels[top:bottom, left:right],
             e.label + (f", {e.nbytes:,} bytes" if e.nbytes is not None else "")) for e in shown]


def png_bytes(image: Image.Image) -> bytes:
    """A lossless PNG of a decode, for the download (fast compression: large photos are common here)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
