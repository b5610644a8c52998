"""compress / decompress: image <-> padded tensor <-> latents <-> .sdc container.

Any size from 1x1 up: images are padded (edge replication) to the 64-pixel grid of the latents and
cropped back after decoding. At low qualities a large enough photo is coded at 1/4, 1/2 or (smooth
photos) 2/3 of its size and scaled back up after decoding (resampling: rates.coding_point). The
networks stream bands of rows (models/rows.py), so memory is bounded by the band however large the
image; the diffusion path's UNet and VAE tile.
"""

from __future__ import annotations

import functools
import io
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from . import container, entropy
from .config import DEFAULT_TILE, LATENT_CELL
from .container import Chunk, FormatError, SDCFile, check_pixels  # noqa: F401  (check_pixels: re-exported)
from .rates import DECODE_MODES, DEFAULT_EFFORT, DEFAULT_QUALITY, coding_point, position_to_quality, quality_to_position  # noqa: F401

if TYPE_CHECKING:
    from collections.abc import Iterator

    import torch

    from .models.sodec import SODECModel

# The decoder's working size: DEFAULT_TILE (config) latent cells; the diffusion path's UNet and VAE
# tiles overlap by 8 cells.
TILE_OVERLAP = 8
# Output pixels per band of the fidelity decoder's rows, at most (a tile's cells cap it too): D_a's
# widest tensor (64 channels at half resolution, float32) then stays under 32 MiB, the largest block
# glibc's malloc reuses instead of mapping fresh pages. A 12 MP decode's D_a (bands of 7 latent rows)
# took 3.2-3.4 s against 3.8-3.9 s in bands of 10 or 15, and peaked 180-225 MB above the latents
# instead of 240-330 (1 thread, two runs each).
FIDELITY_BAND_PIXELS = 1 << 19
SD_LATENT_CELL = 8  # pixels per cell of Stable Diffusion's latent (the UNet's grid)


class ModelMismatchError(ValueError):
    """The file was written with other weights than the model offered to decode it."""


# ---- images in --------------------------------------------------------------------------------
def to_pil(image: Any) -> Image.Image:
    """PIL images pass through; numpy (HxW, HxWxC; uint8 or float in [0, 1]) and torch tensors
    (CxHxW or 1xCxHxW float in [0, 1]) become PIL; a path is opened."""
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, (str, Path)):
        with Image.open(image) as im:
            im.load()
            return im
    if type(image).__module__.startswith("torch"):
        t = image.detach().float().cpu()
        if t.ndim == 4:
            if t.shape[0] != 1:
                raise ValueError("compress takes one image; loop over a batch")
            t = t[0]
        if t.ndim != 3 or t.shape[0] not in (1, 3, 4):
            raise ValueError(f"tensor images must be CxHxW with C in 1, 3, 4; got {tuple(image.shape)}")
        image = t.permute(1, 2, 0).numpy()
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"array images must be uint8 or float in [0, 1], got {arr.dtype}")
        arr = np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)
    modes = {2: "L", 3: {3: "RGB", 4: "RGBA", 2: "LA"}}
    mode = modes[2] if arr.ndim == 2 else modes.get(3, {}).get(arr.shape[2]) if arr.ndim == 3 else None
    if mode is None:
        raise ValueError(f"unsupported array shape {arr.shape}")
    return Image.fromarray(arr, mode)


def normalize_mode(im: Image.Image) -> Image.Image:
    """Modes SODEC stores: RGB, L, RGBA, LA. Others convert as Pillow users expect: P/PA keep
    transparency (RGBA) or become RGB; 1 becomes L; I;16/I/F are scaled to 8-bit L; CMYK, YCbCr,
    LAB, HSV, RGBX become RGB; RGBa/La are un-premultiplied."""
    if im.mode in container.MODES:
        return im
    if im.mode in ("P", "PA"):
        return im.convert("RGBA" if im.has_transparency_data else "RGB")
    if im.mode == "1":
        return im.convert("L")
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if im.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        return Image.fromarray(np.clip(np.round(arr / peak * 255.0), 0, 255).astype(np.uint8), "L")
    if im.mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        return im.convert("RGB")
    if im.mode == "RGBa":
        return im.convert("RGBA")
    if im.mode == "La":
        return im.convert("LA")
    raise ValueError(f"SODEC cannot store images of mode {im.mode!r}")


# ICC data colour space (header bytes 16..20) that can describe each stored mode.
_ICC_SPACE = {"RGB": b"RGB ", "RGBA": b"RGB ", "L": b"GRAY", "LA": b"GRAY"}


def icc_for_mode(profile: bytes | None, mode: str) -> bytes | None:
    """The profile, unless it is a real ICC profile of another colour space than `mode` (a CMYK
    or Lab profile on pixels converted to RGB would make colour-managed viewers misrender)."""
    if profile and len(profile) >= 40 and profile[36:40] == b"acsp" and profile[16:20] != _ICC_SPACE[mode]:
        warnings.warn(f"ICC profile for {profile[16:20].decode('latin-1').strip()} dropped: the image is "
                      f"stored as {mode}", stacklevel=3)
        return None
    return profile


def xmp_of(info: dict[str, Any]) -> bytes | str | None:
    """XMP as Pillow reports it: info["xmp"] (JPEG, WebP, TIFF...) or the PNG iTXt key."""
    return info.get("xmp") or info.get("XML:com.adobe.xmp")


def _alpha_png(alpha: Image.Image) -> bytes:
    buf = io.BytesIO()
    alpha.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


# ---- compress ---------------------------------------------------------------------------------
def encoder_input(pil: Image.Image, multiple: int) -> torch.Tensor:
    """(1, 3, H, W) uint8 RGB padded by edge replication to the latent grid: the encoder converts it
    to floats band by band, so a large photo is never held as a full-size float image."""
    import torch

    arr = np.asarray(pil.convert("RGB"))
    arr = np.pad(arr, ((0, -arr.shape[0] % multiple), (0, -arr.shape[1] % multiple), (0, 0)), mode="edge")
    return torch.from_numpy(arr).permute(2, 0, 1)[None]


# Pillow's Lanczos (a = 3) scales a resampled image down for the encoder and the decode back up.
RESAMPLE_FILTER = Image.Resampling.LANCZOS


def compress(image: Any, *, model: Any = None, quality: int | float | None = None, effort: int = DEFAULT_EFFORT,
             resampling: float | str | None = None,
             icc_profile: bytes | None = None, exif: bytes | None = None, xmp: bytes | None = None,
             device: Any = None, progress: Any = None) -> bytes:
    """Encode an image (PIL, numpy, torch or a path) to .sdc bytes; the bytes are the rate.
    effort 1..9 searches for latents that code smaller at the same quality (slower; the same
    decoder and format); `progress(done, total)` is called per search step (and may raise to cancel).
    resampling: None / "auto" codes low qualities at a quarter, half or (smooth photos) 2/3 of the
    size, where that looks better for the bytes (rates.coding_point); 1, 1.5, 2, 4 or 8 codes at
    that factor at every quality."""
    import torch

    from .engine import get_model
    from .hub import known_model_ids
    from .models.refinement import refine_latents, steps_for_effort

    steps = steps_for_effort(effort)
    pil = normalize_mode(to_pil(image))
    m = get_model(model, device=device)
    shrunk = functools.cache(lambda f: downscaled(pil, f))  # the round trip's downscale is the one coded
    factor, position = coding_point(DEFAULT_QUALITY if quality is None else quality, m.cfg.max_rate_position,
                                    width=pil.width, height=pil.height, resampling=resampling,
                                    round_trip_db=lambda f: round_trip_db(pil, f, small=shrunk(f)))
    if position > 255:
        raise ValueError("model has too many rate positions for the container")
    comp = m.compression
    lc = comp.codec  # the coding side
    coded = shrunk(factor)
    x = encoder_input(coded, lc.pad_multiple())
    with torch.inference_mode():
        y, z = comp.analyse(x)
    if steps:
        y, z = refine_latents(comp, m.fidelity_decoder, x, y, z, position=position, steps=steps,
                              height=coded.height, width=coded.width, ms_ssim_weight=m.ms_ssim_weight,
                              progress=progress)
    lat = lc.quantize(y, z, position)
    z_tab, y_tab = lc.tables()
    z_stream = entropy.encode(lat.z_symbols, lc.z_indexes((1, *lat.z_symbols.shape)), z_tab)
    y_stream = entropy.encode(lc.scan(lat.y_symbols), lc.scan(lat.y_indexes), y_tab)
    chunks: dict[int, bytes] = {}
    if pil.mode in ("RGBA", "LA"):
        chunks[Chunk.ALPHA] = _alpha_png(pil.getchannel("A"))
    icc_profile = icc_for_mode(icc_profile, pil.mode)
    for kind, value in ((Chunk.ICC, icc_profile), (Chunk.EXIF, exif), (Chunk.XMP, xmp)):
        if value:
            chunks[kind] = value.encode() if isinstance(value, str) else bytes(value)
    if container.model_id_hex(m.digest) not in known_model_ids():
        chunks[Chunk.MODEL_NAME] = m.identity.encode()
    return container.pack(SDCFile(width=pil.width, height=pil.height, mode=pil.mode,
                                  model_id=bytes.fromhex(container.model_id_hex(m.digest)), rate_position=position,
                                  z_stream=z_stream, y_stream=y_stream, chunks=chunks, resample=factor))


def downscaled(pil: Image.Image, factor: float) -> Image.Image:
    """The RGB image the streams code at resampling `factor`: ceil(size / factor), Lanczos (the alpha
    plane is stored at full size)."""
    if factor == 1:
        return pil
    return pil.convert("RGB").resize(container.coded_size(pil.width, pil.height, factor), RESAMPLE_FILTER)


def round_trip_db(pil: Image.Image, factor: float, *, small: Image.Image | None = None) -> float:
    """PSNR of the image scaled down by `factor` and back up, no coding: what resampling alone costs
    it, so the ladder can tell smooth photos from detailed ones (rates.DETAIL_FLOOR_DB). `small`: the
    image's downscaled(), when the caller has it. Summed in bands of rows, so a 12 MP photo needs no
    float copy of itself."""
    rgb = np.asarray(pil.convert("RGB"))
    small = downscaled(pil, factor) if small is None else small
    back = np.asarray(small.resize(pil.size, RESAMPLE_FILTER))
    sse = sum(int(np.sum((rgb[r:r + 256].astype(np.int32) - back[r:r + 256]) ** 2, dtype=np.int64))
              for r in range(0, rgb.shape[0], 256))
    return math.inf if sse == 0 else 10.0 * math.log10(255.0**2 * rgb.size / sse)


def upscaled(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    """Decoded 8-bit RGB pixels of a resampled file scaled back to the image's size (or a draft's)
    with Lanczos."""
    if arr.shape[:2] == (height, width):
        return arr
    return np.asarray(Image.fromarray(arr, "RGB").resize((width, height), RESAMPLE_FILTER))


# ---- decompress -------------------------------------------------------------------------------
def model_for_file(f: SDCFile, model: Any = None, device: Any = None, dtype: Any = None) -> SODECModel:
    """The model a file needs: the given one (checked) or the released model it names."""
    from .engine import get_model
    from .hub import known_model_ids

    need = known_model_ids().get(f.model_hex) or f.model_name or f"a model whose weights digest starts {f.model_hex}"
    if model is None:
        from .engine import loaded_model_for

        model = known_model_ids().get(f.model_hex) or loaded_model_for(f.model_hex)
    m = get_model(model, device=device, dtype=dtype)
    if container.model_id_hex(m.digest) != f.model_hex:
        raise ModelMismatchError(f"this file was written with {need}; the model given is {m.identity}")
    if f.rate_position > m.cfg.max_rate_position:
        raise FormatError(f"rate position {f.rate_position} is outside the model's range")
    return m


def decode_latents(f: SDCFile, m: SODECModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Entropy-decode the streams to (y_hat, z_hat) on the CPU, both as the decoders read them
    (z_hat divided by the hyper gain where the model has one); every size is checked first."""

    lc = m.compression.codec
    pm = lc.pad_multiple()
    width, height = f.coded_size
    z_shape = lc.z_shape(-(-height // pm) * pm, -(-width // pm) * pm)
    z_tab, _ = lc.tables()
    zi = lc.z_indexes(z_shape)
    try:
        z_sym = entropy.decode(f.z_stream, zi, z_tab).reshape(z_shape[1:])
        z_hat = lc.z_hat_from_symbols(z_sym)
        y_sym, means = lc.decode_y(f.y_stream, z_hat, f.rate_position)
    except entropy.EntropyError as e:
        raise FormatError(f"corrupt .sdc streams: {e}") from e
    y_hat = lc.y_hat_from_symbols(y_sym, means, f.rate_position)
    return y_hat, lc.z_dequantized(z_hat, f.rate_position).float()


def fidelity_rows(m: SODECModel, y_hat: torch.Tensor, tile: int = DEFAULT_TILE,
                  progress: Any = None, guidance: float | None = None) -> Iterator[torch.Tensor]:
    """D_a's padded output in [0, 1] (float, CPU), in successive parts of full-width rows: the decoder
    streams bands of latent rows (models/rows.py) of about FIDELITY_BAND_PIXELS output pixels, and at
    most as many cells as a `tile` x `tile` square, computing each pixel once with memory bounded by
    the band. `progress(done, total)` per band."""
    import torch

    h, w = y_hat.shape[-2:]
    band = max(1, min(tile * tile, FIDELITY_BAND_PIXELS // LATENT_CELL**2) // w)
    total = -(-h // band)
    y = y_hat.to(m.device, m.dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for done, part in enumerate(m.fidelity_decoder.rows(y, band, guidance), 1):
            yield part.float().cpu()
            if progress is not None:
                progress(done, total)


def decode_image(m: SODECModel, y_hat: torch.Tensor, z_hat: torch.Tensor, mode: str = "auto",
                 guidance: float | None = None,
                 tile: int | None = None, draft: bool = False, progress: Any = None, *,
                 out: np.ndarray | None = None) -> Any:
    """Latents -> padded image tensor (1, 3, H, W) in [0, 1] on the CPU. The fidelity decoder streams
    bands of rows of about `tile` x `tile` latent cells (fidelity_rows); the diffusion path's UNet and
    VAE work in tiles of `tile` latent cells.
    Given `out` (uint8, (h, w, 3), at most the padded size), the image goes there as 8-bit pixels,
    cropped, and `out` is returned: on the fidelity path band by band as D_a streams, so that no
    full-size float image is ever held. `guidance`: see resolve_guidance."""
    import torch

    from .tiling import tiled_apply

    if mode not in DECODE_MODES:
        raise ValueError(f"mode must be one of {DECODE_MODES}, got {mode!r}")
    if mode == "diffusion" and not m.has_diffusion:
        raise ValueError(f"model {m.identity} has no diffusion path (fidelity decoder only); use mode='fidelity'")
    use_diffusion = m.has_diffusion and mode != "fidelity"
    guidance = resolve_guidance(m, guidance)
    # The diffusion path reads the guidance; its fidelity decoder's x_f guides the UNet as trained.
    fidelity_guidance = None if use_diffusion else guidance
    tile = tile or DEFAULT_TILE
    if tile < 1:
        raise ValueError("tile must be a positive number of latent cells")
    if out is not None and not use_diffusion:
        top = 0
        for part in fidelity_rows(m, y_hat, tile, progress=progress, guidance=fidelity_guidance):
            if top < out.shape[0]:
                to_bytes(part, out[top:top + part.shape[2]])
            top += part.shape[2]
        return out
    x_f = torch.empty(1, 3, y_hat.shape[-2] * LATENT_CELL, y_hat.shape[-1] * LATENT_CELL)
    top = 0
    for part in fidelity_rows(m, y_hat, tile, progress=progress if not use_diffusion else None,
                              guidance=fidelity_guidance):
        x_f[:, :, top:top + part.shape[2]] = part
        top += part.shape[2]
    if not use_diffusion:
        return x_f.clamp_(0, 1)
    # The UNet and VAE tiles (SD latent cells, 8 px) blend over a quarter of the tile.
    sd_tile = 2 * tile
    sd_overlap = max(1, min(2 * TILE_OVERLAP, sd_tile // 4))
    dev, dt = m.device, m.dtype
    with torch.inference_mode():
        d = m.diffusion
        y_t = d.latent(y_hat.to(dev, dt), z_hat.to(dev, dt))
        cond = d.guidance_tokens(x_f.to(dev, dt), float(guidance))
        del x_f

        def unet_step(parts: list[torch.Tensor]) -> torch.Tensor:
            return d.denoise(parts[0].to(dev, dt), cond).float().cpu()

        y0 = tiled_apply(unet_step, [y_t.float().cpu()], tile=sd_tile, overlap=sd_overlap, scale=1,
                         out_channels=y_t.shape[1], progress=progress)

        def vae_step(parts: list[torch.Tensor]) -> torch.Tensor:
            return d.decode_latent(parts[0].to(dev, dt), draft=draft).cpu()

        x = tiled_apply(vae_step, [y0], tile=sd_tile, overlap=sd_overlap, scale=SD_LATENT_CELL, out_channels=3)
    if out is None:
        return x
    band = max(1, (16 << 20) // (12 * out.shape[1]))  # to bytes in bands: no second full-size float copy
    for top in range(0, out.shape[0], band):
        to_bytes(x[:, :, top:top + band], out[top:top + band])
    return out


def resolve_guidance(m: SODECModel, guidance: float | None) -> float:
    """The fidelity guidance a decode uses: the caller's, else the model's default. Higher stays
    closer to the original on both paths: on the diffusion path 0 is none, 1 as trained, more is
    stronger; a fidelity decoder that reads it (m.reads_guidance) goes from its best-looking picture
    at 0 to its closest to the original (its MSE end) at 1 and above. Other models ignore it."""
    if guidance is None:
        return m.cfg.default_guidance
    guidance = float(guidance)
    if not guidance >= 0.0 or guidance == float("inf"):
        raise ValueError(f"guidance must be a finite number >= 0, got {guidance}")
    return guidance


def guidance_is_read(m: SODECModel, mode: str = "auto") -> bool:
    """Whether a decode with `mode` reads the guidance: the diffusion path does, and a fidelity decoder
    conditioned on it (m.reads_guidance: whether any path of the model does)."""
    return m.fidelity_decoder.reads_guidance or (m.has_diffusion and mode != "fidelity")


def to_bytes(rows: torch.Tensor, out: np.ndarray) -> None:
    """Rows (1, 3, r, W') in [0, 1] (or beyond: clamped) to 8-bit pixels in `out` (r', W, 3), cropped
    to out's size."""
    import torch

    part = rows[0, :, : out.shape[0], : out.shape[1]].mul(255.0).add_(0.5).clamp_(0, 255)
    out[:] = part.to(torch.uint8).permute(1, 2, 0).numpy()


def to_output_image(arr: np.ndarray, f: SDCFile) -> Image.Image:
    """The decoded 8-bit RGB pixels (the file's size, or a draft's) as the file's image: its mode,
    its alpha plane (scaled to a draft's size)."""
    im = Image.fromarray(arr, "RGB")
    if f.mode in ("L", "LA"):
        im = im.convert("L")
    if f.mode in ("RGBA", "LA"):
        alpha = decode_alpha(f)
        im.putalpha(alpha if alpha.size == im.size else alpha.resize(im.size, RESAMPLE_FILTER))
    return im


def decode_alpha(f: SDCFile) -> Image.Image:
    raw = f.chunk(Chunk.ALPHA)
    if raw is None:
        raise FormatError(f"{f.mode} file has no alpha chunk")
    try:
        with Image.open(io.BytesIO(raw), formats=["PNG"]) as a:
            if a.size != (f.width, f.height) or a.mode != "L":
                raise FormatError("alpha plane does not match the image size")
            a.load()
            return a.copy()
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise FormatError(f"corrupt alpha plane: {e}") from e


def decode_file(f: SDCFile, *, model: Any = None, device: Any = None, dtype: Any = None, mode: str = "auto",
                guidance: float | None = None, tile: int | None = None, draft: bool = False, progress: Any = None,
                warn_size: bool = True, size: tuple[int, int] | None = None) -> Image.Image:
    """The decode pipeline that every door runs (Python, CLI, Pillow, ComfyUI): size limit, the
    file's model, entropy decoding, the decoder, the output image with its metadata in `info`.
    `progress(done, total)` is called per band of the fidelity decoder, or per UNet / VAE tile on the
    diffusion path (and may raise to cancel). `size` (at most the file's): the decode is scaled once
    to it (Lanczos; the alpha plane too), as Pillow's draft() wants a resampled file's thumbnail."""
    if mode not in DECODE_MODES:
        raise ValueError(f"mode must be one of {DECODE_MODES}, got {mode!r}")
    width, height = size or (f.width, f.height)
    if not (1 <= width <= f.width and 1 <= height <= f.height):
        raise ValueError(f"size must be from 1x1 to the file's {f.width}x{f.height}, got {width}x{height}")
    check_pixels(f.width, f.height, warn=warn_size)
    m = model_for_file(f, model=model, device=device, dtype=dtype)
    y_hat, z_hat = decode_latents(f, m)
    coded_width, coded_height = f.coded_size
    x = decode_image(m, y_hat, z_hat, mode=mode, guidance=guidance, tile=tile, draft=draft, progress=progress,
                     out=np.empty((coded_height, coded_width, 3), dtype=np.uint8))
    im = to_output_image(upscaled(x, width, height), f)
    for kind in (Chunk.ICC, Chunk.EXIF, Chunk.XMP):
        if f.chunk(kind) is not None:
            im.info[Chunk.NAMES[kind]] = f.chunk(kind)
    return im


def decompress(data: bytes | bytearray | memoryview | str | Path, *, model: Any = None, device: Any = None,
               mode: str = "auto", guidance: float | None = None, tile: int | None = None, draft: bool = False,
               dtype: Any = None) -> Image.Image:
    """Decode .sdc bytes (or a path) to a PIL image with the file's size and mode; ICC, EXIF and
    XMP land in `image.info`. mode: "diffusion", "fidelity" or "auto" (diffusion when the model
    has it). guidance: higher stays closer to the original (resolve_guidance; None: the model's
    default)."""
    if isinstance(data, (str, Path)):
        data = Path(data).read_bytes()
    return decode_file(container.parse(bytes(data)), model=model, device=device, dtype=dtype, mode=mode,
                       guidance=guidance, tile=tile, draft=draft)


def read_header(data: bytes | str | Path) -> dict[str, Any]:
    """What a file says about itself, without decoding (and without importing torch)."""
    if isinstance(data, (str, Path)):
        data = Path(data).read_bytes()
    from .hub import known_model_ids  # pure Python: reads the bundled configs' digests

    f = container.parse(bytes(data), verify=False, header_only=True)
    return {"width": f.width, "height": f.height, "mode": f.mode, "model_id": f.model_hex,
            "model_name": f.model_name or known_model_ids().get(f.model_hex), "rate_position": f.rate_position,
            "bits_per_pixel": f.bits_per_pixel, "resampling": f.resample, "coded_size": f.coded_size,
            "file_size": f.file_size, "icc_profile": f.chunk(Chunk.ICC) is not None,
            "exif": f.chunk(Chunk.EXIF) is not None, "xmp": f.chunk(Chunk.XMP) is not None}
