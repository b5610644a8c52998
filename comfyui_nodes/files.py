"""SODECSave's and SODECLoad's work: .sdc files named like Save Image's in the output folder, PNG previews in the
temp folder, the list of .sdc files SODECLoad offers (input folder, then output folder tagged " [output]"),
reading one back, and its fingerprint for ComfyUI's cache.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path
from typing import Any

from sodec_plugin.container import EXTENSION as SDC_SUFFIX  # pure Python

from . import coding, paths

DEFAULT_PREFIX = "sodec/SODEC"  # SODECSave's filename_prefix: output/sodec/SODEC_00001_.sdc


def _inside(base: Path, path: Path) -> bool:
    base, path = base.resolve(), path.resolve()
    return path == base or base in path.parents


def _next_counter(folder: Path, stem: str) -> int:
    pattern = re.compile(re.escape(stem) + r"_(\d+)_")
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := pattern.match(p.name))] if folder.is_dir() else []
    return max(numbers, default=0) + 1


def _save_target(prefix: str, output_dir: Path, width: int, height: int) -> tuple[Path, str, int, str]:
    """(folder, file stem, first counter, subfolder) for files named like SaveImage's."""
    fp = paths.folder_paths()
    if fp is not None:
        folder, stem, counter, subfolder, _ = fp.get_save_image_path(prefix, str(output_dir), width, height)
        return Path(folder), stem, counter, subfolder
    prefix = prefix.replace("%width%", str(width)).replace("%height%", str(height))
    sub, stem = os.path.split(os.path.normpath(prefix))
    folder = output_dir / sub
    if not _inside(output_dir, folder):
        raise ValueError(f"filename_prefix {prefix!r} points outside the output folder")
    folder.mkdir(parents=True, exist_ok=True)
    return folder, stem, _next_counter(folder, stem), sub


def save_bitstream(bitstream: coding.SODECBitstream, filename_prefix: str = DEFAULT_PREFIX,
                   output_dir: Path | None = None) -> list[dict[str, Any]]:
    """SODECSave: write each file as <prefix>_<counter>_.sdc; returns what was written."""
    if not bitstream.files:
        raise ValueError("the bitstream holds no files")
    output_dir = Path(output_dir or paths.output_directory())
    heads = bitstream.headers()
    folder, stem, counter, subfolder = _save_target(filename_prefix, output_dir, heads[0]["width"],
                                                    heads[0]["height"])
    saved = []
    for i, (data, h) in enumerate(zip(bitstream.files, heads, strict=True)):
        name = f"{stem.replace('%batch_num%', str(i))}_{counter + i:05}_{SDC_SUFFIX}"
        (folder / name).write_bytes(data)
        saved.append({"filename": name, "subfolder": subfolder, "type": "output", "width": h["width"],
                      "height": h["height"], "mode": h["mode"], "bytes": len(data),
                      "bpp": round(h["bits_per_pixel"], 6)})
    return saved


def save_previews(images: Any, temp_dir: Path | None = None) -> list[dict[str, str]]:
    """PNG previews in ComfyUI's temp folder (what its PreviewImage does), for the node to show."""
    import numpy as np
    from PIL import Image

    temp_dir = Path(temp_dir or paths.temp_directory())
    temp_dir.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    out = []
    for i in range(int(images.shape[0])):
        arr = np.clip(images[i].detach().float().cpu().numpy() * 255.0 + 0.5, 0, 255).astype(np.uint8)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        name = f"SODEC_preview_{tag}_{i:05}_.png"
        Image.fromarray(arr).save(temp_dir / name, compress_level=1)
        out.append({"filename": name, "subfolder": "", "type": "temp"})
    return out


def save_node(bitstream: coding.SODECBitstream, filename_prefix: str = DEFAULT_PREFIX, preview: Any = None,
              output_dir: Path | None = None, temp_dir: Path | None = None) -> dict[str, Any]:
    """SODECSave's UI: the saved files, a preview (the `preview` input, else the encoder's images) and a
    line per file with its size and bits per pixel."""
    saved = save_bitstream(bitstream, filename_prefix, output_dir)
    shown = preview if preview is not None else bitstream.source
    ui: dict[str, Any] = {"sdc": saved,
                          "text": [f"{s['filename']}: {s['width']}x{s['height']}, {s['bytes']:,} bytes, "
                                   f"{s['bpp']:.4f} bpp" for s in saved]}
    if shown is not None:
        ui["images"] = save_previews(shown, temp_dir)
    return ui


OUTPUT_TAG = " [output]"  # ComfyUI's annotation for files in the output folder (as LoadImageOutput)


def _sdc_under(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend((Path(dirpath) / f).relative_to(root).as_posix() for f in filenames
                     if f.lower().endswith(SDC_SUFFIX))
    return sorted(found)


def list_sdc_files(input_dir: Path | None = None, output_dir: Path | None = None) -> list[str]:
    """.sdc files in the input folder, then those in the output folder (what SODEC Save wrote)
    tagged " [output]"; '/'-separated, subfolders included."""
    inputs = _sdc_under(Path(input_dir or paths.input_directory()))
    outputs = _sdc_under(Path(output_dir or paths.output_directory()))
    return inputs + [name + OUTPUT_TAG for name in outputs]


def sdc_path(name: str, input_dir: Path | None = None, output_dir: Path | None = None) -> Path:
    """The file a SODEC Load choice names: in the input folder, or the output folder when tagged."""
    if name.endswith(OUTPUT_TAG):
        name, root, where = name[:-len(OUTPUT_TAG)], Path(output_dir or paths.output_directory()), "output"
    else:
        root, where = Path(input_dir or paths.input_directory()), "input"
    path = root / name
    if not _inside(root, path):
        raise ValueError(f"{name!r} is outside the {where} folder")
    if not path.is_file():
        raise FileNotFoundError(f"no .sdc file {name!r} in the {where} folder")
    return path


def load_bitstream(name: str, input_dir: Path | None = None) -> coding.SODECBitstream:
    """SODECLoad: an .sdc file from the input (or tagged output) folder, checked (magic, sizes, CRC)
    before it goes on."""
    from sodec_plugin import container

    data = sdc_path(name, input_dir).read_bytes()
    container.parse(data)
    return coding.SODECBitstream([data], [Path(name.removesuffix(OUTPUT_TAG)).name])


def file_fingerprint(name: str, input_dir: Path | None = None) -> str:
    """Changes when the file does, so ComfyUI reruns SODECLoad instead of using its cache."""
    try:
        return hashlib.sha256(sdc_path(name, input_dir).read_bytes()).hexdigest()
    except (OSError, ValueError):
        return ""
