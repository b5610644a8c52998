"""SODECEncode's and SODECDecode's work: the SODEC_BITSTREAM wire type, IMAGE (and MASK, as alpha) to one .sdc
file per batch item and back (decoding through codec.decode_file), with ComfyUI's progress bar and Cancel
between items and tiles (RunHooks). torch, numpy and the codec are imported inside the functions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sodec_plugin.config import DEFAULT_TILE, LATENT_CELL, SODECConfig
from sodec_plugin.hub import DEFAULT_MODEL, bundled_models
from sodec_plugin.rates import (
    DECODE_MODES,
    DEFAULT_EFFORT,
    DEFAULT_QUALITY,
    RESAMPLING_CHOICES,
    resampling_from_name,
    resampling_note,
)

from . import model_loading, paths

log = logging.getLogger("sodec.comfyui")

BITSTREAM_TYPE = "SODEC_BITSTREAM"
# auto: the diffusion decoder when the model has one, else its fidelity decoder. The default, so that what the
# node shows is what every model does; "diffusion" and "fidelity" stay (workflows saved with them load as before).
DECODE_PATHS = DECODE_MODES
DEFAULT_DECODE_PATH = "auto"
# The resampling combo's choices (ComfyUI combos hold strings; rates.resampling_from_name reads them).
RESAMPLING_NAMES = tuple(str(choice) for choice in RESAMPLING_CHOICES)
DEFAULT_RESAMPLING = "auto"


def model_default_guidance(folder: Path | None = None) -> float:
    """The guidance a model folder's config.json decodes at when given none (config.json read as JSON: no
    torch); no folder: the bundled default model's, or SODECConfig's default when it is not installed."""
    if folder is None:
        folder = bundled_models().get(DEFAULT_MODEL)
    if folder is None:
        return SODECConfig.default_guidance
    return SODECConfig.load(folder)[0].default_guidance


# The guidance widget's default: what the bundled default model decodes at (see guidance_note).
DEFAULT_GUIDANCE = model_default_guidance()
DEFAULT_TILE_PX = DEFAULT_TILE * LATENT_CELL  # the engine's own tile, in pixels
MIN_TILE_PX = 256  # 16 latent cells; the engine keeps its own minimum for the fidelity decoder
MAX_TILE_PX = 8192


class RunHooks:
    """Progress and interruption between steps: ComfyUI's progress bar and interrupt flag when present,
    else the callables given (tests) or nothing."""

    def __init__(self, steps: int, progress: Callable[[float, int], None] | None = None,
                 interrupted: Callable[[], None] | None = None) -> None:
        self.steps = max(int(steps), 1)
        self._progress = progress
        self._interrupted = interrupted
        self._bar = None
        utils = paths.comfy_module("comfy.utils")
        if progress is None and utils is not None and hasattr(utils, "ProgressBar"):
            self._bar = utils.ProgressBar(self.steps * 100)
        mm = model_loading.model_management()
        if interrupted is None and mm is not None:
            self._interrupted = mm.throw_exception_if_processing_interrupted

    def check(self) -> None:
        """Raise if the user pressed Cancel (ComfyUI's InterruptProcessingException)."""
        if self._interrupted is not None:
            self._interrupted()

    def progress(self, done: float) -> None:
        """`done` counts finished items (fractions for tiles within an item)."""
        done = min(max(done, 0.0), float(self.steps))
        if self._bar is not None:
            self._bar.update_absolute(int(round(done * 100)), self.steps * 100)
        if self._progress is not None:
            self._progress(done, self.steps)


@dataclass(eq=False)
class SODECBitstream:
    """What travels on a SODEC_BITSTREAM wire: one .sdc file per batch item, plus, from the encoder, the
    images it coded (a reference, for SODECSave's preview)."""

    files: list[bytes]
    names: list[str] = field(default_factory=list)
    source: Any = None

    def __len__(self) -> int:
        return len(self.files)

    def headers(self) -> list[dict[str, Any]]:
        import sodec_plugin

        return [sodec_plugin.read_header(b) for b in self.files]

    def mean_bpp(self) -> float:
        heads = self.headers()
        return sum(h["bits_per_pixel"] for h in heads) / len(heads) if heads else 0.0

    def summary(self) -> list[str]:
        """A line per file, for the node to show: size, bytes, bits per pixel, the resampling factor where the
        file codes a smaller image, and the model it names."""
        out = []
        for i, (data, h) in enumerate(zip(self.files, self.headers(), strict=True)):
            name = self.names[i] if i < len(self.names) else f"item {i}"
            model = h["model_name"] or f"model id {h['model_id'][:16]}"
            out.append(f"{name}: {h['width']}x{h['height']} {h['mode']}, {len(data):,} bytes, "
                       f"{h['bits_per_pixel']:.4f} bpp{resampling_note(h['resampling'])}, {model}")
        return out


def _alpha_from_mask(mask: Any, n: int, height: int, width: int) -> Any:
    """MASK (B, H, W) or (H, W), 1 = transparent (Load Image's convention) -> alpha (B, H, W, 1) in
    [0, 1], or None when the mask is all zeros (opaque: nothing to store). Load Image gives a 64x64
    zero mask for images without alpha, so only a non-zero mask must match the image size."""
    m = mask.detach().float().cpu()
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3:
        raise ValueError(f"MASK must be (batch, height, width), got shape {tuple(mask.shape)}")
    if not bool((m != 0).any()):
        return None
    if tuple(m.shape[1:]) != (height, width):
        raise ValueError(f"the mask is {m.shape[2]}x{m.shape[1]}, the images {width}x{height}")
    if m.shape[0] not in (1, n):
        raise ValueError(f"the mask batch ({m.shape[0]}) must be 1 or the image batch ({n})")
    return (1.0 - m.clamp(0, 1)).expand(n, -1, -1)[..., None]


def encode_images(handle: model_loading.SODECModelHandle, images: Any, quality: int = DEFAULT_QUALITY,
                  hooks: RunHooks | None = None, mask: Any = None, effort: int = DEFAULT_EFFORT,
                  resampling: str = DEFAULT_RESAMPLING) -> SODECBitstream:
    """SODECEncode: IMAGE (B, H, W, C float in [0, 1]) to one .sdc file per batch item; an optional
    MASK becomes the stored alpha (kept exactly, as 8-bit). With effort, the progress bar (and
    cancelling) follows the encoder's search steps. resampling: one of RESAMPLING_NAMES."""
    import sodec_plugin

    factor = resampling_from_name(resampling)
    if getattr(images, "ndim", 0) != 4:
        raise ValueError(f"IMAGE must be a (batch, height, width, channels) tensor, got shape "
                         f"{tuple(getattr(images, 'shape', ()))}")
    n = int(images.shape[0])
    alpha = None if mask is None else _alpha_from_mask(mask, n, int(images.shape[1]), int(images.shape[2]))
    hooks = hooks or RunHooks(n)
    model = handle.ready()
    files = []
    for i in range(n):
        hooks.check()
        item = images[i].detach().float().cpu()
        if alpha is not None:
            item = _with_alpha(item, alpha[i])
        def step_done(done: int, total: int, i: int = i) -> None:
            hooks.check()
            hooks.progress(i + done / total)

        files.append(sodec_plugin.compress(item.numpy(), model=model, quality=quality, effort=effort,
                                           resampling=factor, progress=step_done))
        hooks.progress(i + 1)
    return SODECBitstream(files, [f"item {i}" for i in range(n)], images)


def _with_alpha(item: Any, alpha: Any) -> Any:
    """(H, W, C) image + (H, W, 1) alpha -> RGBA or LA (an existing alpha channel is replaced)."""
    import torch

    colour = item[..., :1] if item.shape[-1] in (1, 2) else item[..., :3]
    return torch.cat([colour, alpha], dim=-1)


def decode_bitstream(handle: model_loading.SODECModelHandle, bitstream: SODECBitstream,
                     decode_path: str = DEFAULT_DECODE_PATH, guidance: float = DEFAULT_GUIDANCE,
                     tile: int = DEFAULT_TILE_PX,
                     hooks: RunHooks | None = None) -> tuple[Any, Any, list[str]]:
    """SODECDecode: every file to IMAGE (B, H, W, 3) and MASK (B, H, W; 1 where transparent, ComfyUI's
    LoadImage convention), plus notes for the node. The batch must share one size."""
    import numpy as np
    import torch

    from sodec_plugin import codec, container

    if not bitstream.files:
        raise ValueError("the bitstream holds no files")
    parsed = [container.parse(bytes(b)) for b in bitstream.files]
    sizes = {(f.width, f.height) for f in parsed}
    if len(sizes) > 1:
        raise ValueError(f"a batch decodes to one IMAGE, so its files must share one size; got {sorted(sizes)}")
    n = len(parsed)
    hooks = hooks or RunHooks(n)
    model = handle.ready()
    mode, notes = resolve_decode_path(model, decode_path)
    notes.append(guidance_note(model, mode, float(guidance)))
    tile_cells = max(int(tile), MIN_TILE_PX) // LATENT_CELL
    images, masks = [], []
    for i, f in enumerate(parsed):
        hooks.check()

        def tile_done(done: int, total: int, i: int = i) -> None:
            hooks.check()
            hooks.progress(i + done / max(total, 1))

        im = codec.decode_file(f, model=model, mode=mode, guidance=float(guidance), tile=tile_cells,
                               progress=tile_done)
        images.append(torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0))
        if "A" in im.getbands():
            masks.append(1.0 - torch.from_numpy(np.asarray(im.getchannel("A"), dtype=np.float32) / 255.0))
        else:
            masks.append(torch.zeros((f.height, f.width), dtype=torch.float32))
        hooks.progress(i + 1)
    notes.insert(0, f"decoded {n} image(s) of {parsed[0].width}x{parsed[0].height} with the {mode} decoder of "
                    f"{model.identity}")
    return torch.stack(images), torch.stack(masks), notes


def resolve_decode_path(model: Any, decode_path: str) -> tuple[str, list[str]]:
    """The decoder that runs for `decode_path` ("diffusion" or "fidelity"), and why when that is not what
    the choice reads: auto on a model without the diffusion path, or diffusion asked of one (a workflow saved
    for another model: the fidelity decoder runs and the node says so, where the engine would refuse)."""
    if decode_path not in DECODE_PATHS:
        raise ValueError(f"decode path must be one of {DECODE_PATHS}, got {decode_path!r}")
    if decode_path == "fidelity":
        return "fidelity", []
    if model.has_diffusion:
        return "diffusion", []
    if decode_path == "auto":
        return "fidelity", [f"auto: {model.identity} has no diffusion path, so its fidelity decoder ran"]
    note = f"{model.identity} has no diffusion path (fidelity decoder only): decoded with the fidelity decoder"
    log.warning("SODEC: %s", note)
    return "fidelity", [note]


def guidance_note(model: Any, mode: str, guidance: float) -> str:
    """What the guidance input did with `mode` (a decoder that resolve_decode_path chose): the diffusion
    decoder reads it, and a fidelity decoder conditioned on it (clamped to 0..1); other fidelity decoders
    do not."""
    from sodec_plugin.codec import guidance_is_read

    if mode == "diffusion":
        return f"guidance {guidance:.2f} (diffusion decoder)"
    if guidance_is_read(model, mode):
        clamped = " (read as 1)" if guidance > 1 else ""
        return (f"guidance {guidance:.2f}{clamped} (fidelity decoder: 0 best-looking, 1 closest to the "
                "original)")
    return f"guidance {guidance:.2f} not used: the fidelity decoder does not read it"
