"""The Pillow plugin for SODEC files (.sdc): open, load, draft, reduce, verify and save.

Modelled on Pillow's WebP and AVIF plugins. Opening parses the container header only (pure
Python: no torch, numpy or model), so `size`, `mode` and `info` cost a file read of a few
kilobytes; `load()` reads the whole file, checks its CRC, and decodes through the engine's
shared model (`sodec_plugin.engine`), so every image in a process uses one model instance.

Decoding options are module-level defaults (Pillow has no way to pass options to `Image.open`),
set with `register_sodec_opener(**defaults)` and copied to each opened image as
`im.sodec_options`, which may be edited before `load()`.

Errors follow Pillow's conventions: a file that is not SODEC, or whose header is damaged, is
rejected at open (`Image.open` raises UnidentifiedImageError); a damaged or cut body is found
at `load()` and raises OSError; a size above `Image.MAX_IMAGE_PIXELS` warns
(DecompressionBombWarning) and above twice it raises DecompressionBombError, as for every
Pillow format, before anything is allocated or a model is loaded.

Truncated files: SODEC entropy-codes the whole image as one stream, so a cut (or otherwise
damaged) file has no trustworthy pixels at all, and a cut file cannot be told from a damaged one
(the checksum fails for both). With `ImageFile.LOAD_TRUNCATED_IMAGES = False` (the default)
`load()` raises OSError("image file is truncated or corrupt ..."). With it True, `load()` gives an
image of the header's size and mode filled with mid-gray (128) and opaque alpha, never decoded
garbage. Files whose checksum is intact but whose streams cannot be decoded are not truncated,
so they raise OSError either way.
"""

from __future__ import annotations

import dataclasses
import io
import os
import threading
import warnings
from pathlib import Path
from typing import IO, Any

from PIL import Image, ImageFile

from sodec_plugin import container
from sodec_plugin.container import Chunk, FormatError, SDCFile, TruncatedError
from sodec_plugin.rates import (
    DECODE_MODES,
    DEFAULT_EFFORT,
    DEFAULT_QUALITY,
    RESAMPLING_CHOICES,
    check_effort,
    check_quality,
    check_resampling,
    point_quality,
)

FORMAT = "SODEC"
EXTENSION = container.EXTENSION
MIME = container.MIME
# Bytes read by Image.open; the header and its metadata chunks are usually far smaller. A file
# whose chunks (e.g. a large alpha plane) do not fit is read whole, still without decoding.
HEADER_PROBE = 16384
DRAFT_SCALES = (8, 4, 2)
TRUNCATED_FILL = 128

OPTIONS = {
    "model": "model name, folder, Hub repo id or loaded SODECModel used to save and decode",
    "device": "torch device for the model ('cpu', 'cuda', 'auto')",
    "dtype": "model dtype for decoding ('fp32', 'fp16', 'bf16' or a torch.dtype)",
    "quality": "default save quality, 1..100",
    "effort": "default save effort, 0..9 (0: fastest; higher: smaller files, slower saves, same decoder)",
    "resampling": f"default save resampling, one of {RESAMPLING_CHOICES} (auto: low qualities code at 1/4, 1/2 or 2/3 "
                  "size where that looks better)",
    "decode_mode": "engine decode path for load(): 'auto', 'diffusion' or 'fidelity'",
    "guidance": "fidelity guidance: higher stays closer to the original (default: the model's own)",
    "tile": "decoder tile size in latent cells for large images (engine default)",
}

_defaults: dict[str, Any] = {}
_defaults_lock = threading.Lock()
_config_cache: dict[tuple[str, int, int], tuple[str, int, str] | None] = {}


def options() -> dict[str, Any]:
    """A copy of the current plugin defaults (what `register_sodec_opener` set)."""
    with _defaults_lock:
        return dict(_defaults)


def register_sodec_opener(**defaults: Any) -> None:
    """Register the SODEC format with Pillow and update the plugin defaults.

    Known keys are those in OPTIONS (model, device, dtype, quality, effort, resampling, decode_mode, guidance,
    tile); a value of None removes a default; unknown keys warn and are ignored. Calling it again merges.
    """
    for key in [k for k in defaults if k not in OPTIONS]:
        warnings.warn(f"register_sodec_opener: unknown option {key!r} ignored (known: {', '.join(OPTIONS)})",
                      UserWarning, stacklevel=2)
        del defaults[key]
    if defaults.get("quality") is not None:
        check_quality(defaults["quality"])
    if defaults.get("effort") is not None:
        check_effort(defaults["effort"])
    check_resampling(defaults.get("resampling"))
    if defaults.get("decode_mode") is not None and defaults["decode_mode"] not in DECODE_MODES:
        raise ValueError(f"decode_mode must be one of {DECODE_MODES}, got {defaults['decode_mode']!r}")
    with _defaults_lock:
        for key, value in defaults.items():
            if value is None:
                _defaults.pop(key, None)
            else:
                _defaults[key] = value
    Image.register_open(FORMAT, SodecImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, EXTENSION)
    Image.register_mime(FORMAT, MIME)


def _raw_tile(size: tuple[int, int], mode: str) -> Any:
    """A raw tile of the whole image (ImageFile._Tile on Pillow >= 11, a plain tuple before)."""
    tile = getattr(ImageFile, "_Tile", None)
    args = ("raw", (0, 0, *size), 0, mode)
    return tile(*args) if tile is not None else args


def _accept(prefix: bytes) -> bool | str:
    if container.accept(prefix[:4]):
        return True
    if prefix[:3] == container.MAGIC and len(prefix) >= 4:
        return f"image file could not be identified because it is SODEC version {prefix[3]}, which this reader " \
               f"does not know (it reads version {container.VERSION})"
    return False


# ---- what a header says about its model (pure Python) ------------------------------------------
def _model_config(folder: Path) -> tuple[str, int, str] | None:
    """(weights digest prefix, max rate position, config name) of a model folder, cached per
    config.json version; None if it is not a readable model folder."""
    from sodec_plugin.config import CONFIG_NAME

    path = folder / CONFIG_NAME
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _config_cache:
        value: tuple[str, int, str] | None = None
        try:
            import json

            from sodec_plugin.config import SODECConfig

            raw = json.loads(path.read_text())
            cfg = SODECConfig.from_dict(raw)
            value = (container.model_id_hex(str(raw.get("weights_sha256", ""))), cfg.max_rate_position, cfg.name)
        except (OSError, ValueError, TypeError, AttributeError):
            value = None
        _config_cache[key] = value
    return _config_cache[key]


def _describe_model(header: SDCFile, model: Any) -> tuple[str, int | None]:
    """info["model"] (release name, else the file's name chunk, else the id in hex) and the
    model's largest rate position when a model with the file's id is at hand (for info["quality"])."""
    from sodec_plugin import hub
    from sodec_plugin.releases import BY_MODEL_ID

    want = header.model_hex
    release = BY_MODEL_ID.get(want)
    name = release.name if release is not None else header.model_name or want
    folder: Path | None = hub.bundled_models().get(name)
    if hasattr(model, "cfg") and hasattr(model, "digest"):  # an already loaded SODECModel
        if container.model_id_hex(str(model.digest)) == want:
            return name, int(model.cfg.max_rate_position)
    elif isinstance(model, (str, os.PathLike)) and Path(model).expanduser().is_dir():
        folder = Path(model).expanduser()
    cfg = _model_config(folder) if folder is not None else None
    return name, cfg[1] if cfg is not None and cfg[0] == want else None


# ---- the image file -------------------------------------------------------------------------
class SodecImageFile(ImageFile.ImageFile):
    """A SODEC file: header parsed at open, pixels decoded by the engine at load()."""

    format = FORMAT
    format_description = "SODEC learned image codec"
    _sdc_header: SDCFile
    _sdc_scale = 1
    _sdc_draft = False
    _sdc_done = False

    def _open(self) -> None:
        assert self.fp is not None
        head = self.fp.read(HEADER_PROBE)
        if len(head) < 4 or not container.accept(head[:4]):
            raise SyntaxError("not a SODEC file")
        here = self.fp.tell()
        file_size = self.fp.seek(0, os.SEEK_END)
        self.fp.seek(here)
        try:
            header = container.parse(head, verify=False, header_only=True)
        except TruncatedError as e:
            if len(head) >= file_size:
                raise SyntaxError(f"broken SODEC file: {e}") from e
            head += self.fp.read()  # chunks larger than the probe: read on, still no decoding
            try:
                header = container.parse(head, verify=False, header_only=True)
            except FormatError as e2:
                raise SyntaxError(f"broken SODEC file: {e2}") from e2
        except FormatError as e:  # hopeless whatever follows: never read the rest of the file
            raise SyntaxError(f"broken SODEC file: {e}") from e
        self._sdc_header = dataclasses.replace(header, file_size=file_size)
        self._size = (header.width, header.height)
        self._mode = header.mode
        self.sodec_options: dict[str, Any] = options()
        name, max_position = _describe_model(header, self.sodec_options.get("model"))
        self.info["model"] = name
        self.info["model_id"] = header.model_hex
        self.info["rate_position"] = header.rate_position
        self.info["resampling"] = header.resample
        if max_position is not None and header.rate_position <= max_position:
            # the quality on this image's ladder: a low quality may code at 1/4, 1/2 or 2/3 size (rates.coding_point)
            self.info["quality"] = point_quality(header.resample, header.rate_position, max_position,
                                                 width=header.width, height=header.height)
        self.info["bpp"] = self._sdc_header.bits_per_pixel
        for kind in (Chunk.ICC, Chunk.EXIF, Chunk.XMP):
            value = header.chunk(kind)
            if value:
                self.info[Chunk.NAMES[kind]] = value
        # A placeholder tile (as AVIF does): Pillow treats the image as not loaded until load().
        self.tile = [_raw_tile(self.size, self.mode)]

    def _getexif(self) -> dict[int, Any] | None:
        if "exif" not in self.info:
            return None
        return self.getexif()._get_merged_dict()

    def draft(self, mode: str | None, size: tuple[int, int] | None) -> tuple[str, tuple[int, int, float, float]] | None:
        """Decode through the fast fidelity path whenever `size` is smaller than the image, so
        `thumbnail()` skips the diffusion decoder, and at 1/2, 1/4 or 1/8 scale (largest not
        below `size`) where that fits; a file coded at a smaller size (resampling) is then scaled
        once from that size instead of decoded at full size and reduced. Like JPEG's draft: once
        only, before load(); `mode` is not changed."""
        if not self.tile or self._sdc_done or self._sdc_draft or not size:
            return None
        width, height = self.size
        if size[0] >= width and size[1] >= height:
            return None
        fit = min(width // max(int(size[0]), 1), height // max(int(size[1]), 1))
        scale = next((s for s in DRAFT_SCALES if fit >= s), 1)
        self._sdc_draft = True
        self._sdc_scale = scale
        self._size = (-(-width // scale), -(-height // scale))
        self.tile = [_raw_tile(self.size, self.mode)]
        return self.mode, (0, 0, width / scale, height / scale)

    def reduce(self, factor: int | tuple[int, int], box: tuple[int, int, int, int] | None = None) -> Image.Image:
        """Before load(), decode through the fidelity path and reduce that (a fast thumbnail; the
        image itself stays unloaded); after load(), Pillow's reduce of the loaded pixels."""
        if self.tile and not self._sdc_done and factor not in (1, (1, 1)):
            out = self._decode("fidelity").reduce(factor, box)
            out.info = self.info.copy()  # as Pillow's own reduce keeps ICC, EXIF, XMP
            return out
        return super().reduce(factor, box)

    def load(self) -> Image.core.PixelAccess | None:
        if self.tile and not self._sdc_done:
            mode = "fidelity" if self._sdc_draft else self.sodec_options.get("decode_mode", "auto")
            image = self._decode(mode)
            if self.fp and self._exclusive_fp:
                self.fp.close()
            self.fp = io.BytesIO(image.tobytes())
            self.tile = [_raw_tile(self.size, self.mode)]
            self._sdc_done = True
        return super().load()

    def load_seek(self, pos: int) -> None:
        """The raw tile reads an in-memory buffer; no seeking in (or memory-mapping of) the file."""

    def verify(self) -> None:
        """Check the whole file (lengths and CRC) without decoding; SyntaxError if broken."""
        try:
            container.parse(self._read_file(), verify=True)
        except FormatError as e:
            raise SyntaxError(f"broken SODEC file: {e}") from e
        super().verify()

    def _read_file(self) -> bytes:
        if self.fp is None:
            raise ValueError("the file of this image is closed")
        self.fp.seek(0)
        return self.fp.read()

    def _placeholder(self) -> Image.Image:
        fill = {"L": TRUNCATED_FILL, "LA": (TRUNCATED_FILL, 255), "RGB": (TRUNCATED_FILL,) * 3,
                "RGBA": (TRUNCATED_FILL,) * 3 + (255,)}[self.mode]
        return Image.new(self.mode, self.size, fill)

    def _decode(self, mode: str) -> Image.Image:
        """The file's pixels at self.size (the draft scale, if any) via the shared model."""
        header = self._sdc_header
        try:
            f = container.parse(self._read_file(), verify=True)
        except FormatError as e:
            if ImageFile.LOAD_TRUNCATED_IMAGES:
                return self._placeholder()
            raise OSError(f"image file is truncated or corrupt ({e})") from e
        if (f.width, f.height, f.mode, f.model_id) != (header.width, header.height, header.mode, header.model_id):
            raise OSError("the SODEC file changed after it was opened")

        from sodec_plugin import codec  # the engine: numpy now, torch on first decode

        opts = self.sodec_options
        try:
            # A resampled file's draft is scaled once, from the coded size (no full-size upscale to reduce).
            size = self.size if self._sdc_scale > 1 and f.resample > 1 else None
            image = codec.decode_file(f, model=opts.get("model"), device=opts.get("device"), dtype=opts.get("dtype"),
                                      mode=mode, guidance=opts.get("guidance"), tile=opts.get("tile"),
                                      warn_size=False, size=size)
        except codec.ModelMismatchError as e:
            raise OSError(f"cannot decode this SODEC file: {e}") from e
        except FormatError as e:
            raise OSError(f"broken data stream when reading SODEC file: {e}") from e
        if image.size != self.size and self._sdc_scale > 1:
            image = image.reduce(self._sdc_scale)
        if image.size != self.size or image.mode != self.mode:
            raise OSError(f"decoder returned {image.mode} {image.size}, expected {self.mode} {self.size}")
        return image


# ---- save -----------------------------------------------------------------------------------
def _metadata(im: Image.Image, key: str) -> bytes | None:
    """encoderinfo[key], else im.info[key]; Image.Exif and str are converted; falsy means none."""
    from sodec_plugin.codec import xmp_of

    if key in im.encoderinfo:
        value = im.encoderinfo[key]
    else:
        value = xmp_of(im.info) if key == "xmp" else im.info.get(key)
    if isinstance(value, Image.Exif):
        value = value.tobytes()
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not value:
        return None
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise ValueError(f"{key} must be bytes, got {type(value).__name__}")
    return bytes(value)


def storable(im: Image.Image) -> Image.Image:
    """The image in a mode SODEC stores (RGB, L, RGBA, LA): codec.normalize_mode, the one home of the
    rules (the package docstring lists them)."""
    from sodec_plugin import codec

    return codec.normalize_mode(im)


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    """Encode fully in memory, then write once: a failure writes nothing (and Image.save removes
    a file it created)."""
    info = im.encoderinfo
    defaults = options()
    quality, effort, resampling, model, device = (info.get(k) if info.get(k) is not None else defaults.get(k)
                                                  for k in ("quality", "effort", "resampling", "model", "device"))
    quality = DEFAULT_QUALITY if quality is None else quality
    effort = DEFAULT_EFFORT if effort is None else effort
    check_quality(quality)
    check_effort(effort)
    check_resampling(resampling)
    metadata = {key: _metadata(im, key) for key in ("icc_profile", "exif", "xmp")}
    image = storable(im)

    from sodec_plugin import codec

    data = codec.compress(image, model=model, quality=quality, effort=effort, resampling=resampling, device=device,
                          **metadata)
    fp.write(data)
