"""A strip of 1:1 decoded crops at SODEC's rate points, next to AVIF's answers at the same size.

Below about 0.07 bpp AVIF cannot make a photo smaller; what a user does instead is downscale it 2x or 4x,
code that, and enlarge the decode (the avif-down2 / avif-down4 baselines of `sodec eval`). Averages hide what
codecs do to edges and colour at these rates, so this draws them: one row per rate point, the original crop,
SODEC's decode and each AVIF variant rate-matched to SODEC's file (its bytes and CVVDP / SSIMULACRA2 of the
whole image under each crop).

`--guidance G [G ...]` decodes each SODEC file at every fidelity guidance value, one tile each ("SODEC g=G";
higher stays closer to the original), so that a guided decoder's settings sit beside AVIF at the same size;
`--qualities` picks the rate points (e.g. a middle one, where plain AVIF is in range) instead of the lowest
`--points`. The strip is written as PNG, or as JPEG (quality 95, 4:4:4) when --out ends in .jpg.

    python benchmarks/lowrate_strip.py IMAGE[:LEFT,TOP] ... --out docs/lowrate-strip.jpg [--model M]
        [--points 3 | --qualities Q [Q ...]] [--guidance G [G ...]] [--size 256]
"""

from __future__ import annotations

import argparse
import io
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from sodec_plugin import codec
from sodec_plugin.engine import get_model
from sodec_plugin.eval.baselines import RateMatch, match_rate
from sodec_plugin.eval.run import default_qualities, guidance_curves
from sodec_plugin.eval.scores import Scorer

BASELINES = ("avif", "avif-down2", "avif-down4")
LABEL_H = 34
JPEG = {"quality": 95, "subsampling": 0}  # 4:4:4: chroma halved would blur the very colour edges shown


def _tile(image: Image.Image, box: tuple[int, int, int, int], lines: list[str]) -> Image.Image:
    crop = image.crop(box)  # a crop, never resized: every tile is 1:1
    tile = Image.new("RGB", (crop.width, crop.height + LABEL_H), "white")
    tile.paste(crop, (0, LABEL_H))
    draw = ImageDraw.Draw(tile)
    for i, line in enumerate(lines):
        draw.text((4, 2 + 15 * i), line, fill="black")
    return tile


def _scores_line(s: dict[str, float]) -> str:
    return f"CVVDP {s['cvvdp']:.2f}  SSIMULACRA2 {s['ssimulacra2']:.1f}"


def _stack(parts: list[Image.Image], *, gap: int, across: bool) -> Image.Image:
    """`parts` side by side (across) or one under the other, `gap` px of white between them."""
    if across:
        size = (sum(p.width for p in parts) + gap * (len(parts) - 1), max(p.height for p in parts))
    else:
        size = (max(p.width for p in parts), sum(p.height for p in parts) + gap * (len(parts) - 1))
    out = Image.new("RGB", size, "white")
    at = 0
    for p in parts:
        out.paste(p, (at, 0) if across else (0, at))
        at += (p.width if across else p.height) + gap
    return out


def parse_image(spec: str) -> tuple[Path, tuple[int, int] | None]:
    """IMAGE or IMAGE:LEFT,TOP -> the path and the crop's corner (None: the centre)."""
    name, _, corner = spec.partition(":")
    if not corner:
        return Path(name), None
    try:
        left, top = (int(v) for v in corner.split(","))
    except ValueError:
        raise ValueError(f"the crop's corner must be LEFT,TOP in px, got {corner!r}") from None
    return Path(name), (left, top)


def crop_box(image: Image.Image, left_top: tuple[int, int] | None, size: int) -> tuple[int, int, int, int]:
    """The `size` px square at `left_top` (default: the centre), refused where it leaves the image."""
    if size < 1 or size > min(image.size):
        raise ValueError(f"--size {size} does not fit in a {image.width}x{image.height} image")
    if left_top is None:
        left_top = ((image.width - size) // 2, (image.height - size) // 2)
    left, top = left_top
    if not (0 <= left <= image.width - size and 0 <= top <= image.height - size):
        raise ValueError(f"a {size} px crop at {left},{top} leaves the {image.width}x{image.height} image")
    return left, top, left + size, top + size


def strip(path: Path, left_top: tuple[int, int] | None, *, model: Any, qualities: list[float], size: int,
          scorer: Scorer, curves: dict[str, float | None]) -> tuple[Image.Image, list[dict]]:
    """One block of rows for one photo, and the numbers drawn on it. `curves`: tile label -> the guidance
    its decode uses (guidance_curves; None: the model's default); all decode the same file."""
    with Image.open(path) as im:
        image = im.convert("RGB")
    ref = np.asarray(image)
    box = crop_box(image, left_top, size)
    matched: dict[tuple[str, float], RateMatch] = {}  # this photo's AVIF encodes, shared by its rate points
    rows, numbers = [], []
    for q in qualities:
        data = codec.compress(image, model=model, quality=q)
        bpp = 8 * len(data) / (image.width * image.height)
        tiles = [_tile(image, box, [path.stem, f"original, {image.width}x{image.height}"])]
        for label, g in curves.items():
            dec = codec.decompress(data, model=model, guidance=g)
            s = scorer(ref, np.asarray(dec.convert("RGB")))
            tiles.append(_tile(dec, box, [f"{label} q{q:g}: {len(data)} B, {bpp:.3f} bpp", _scores_line(s)]))
            numbers.append({"image": path.name, "codec": label.lower(), "quality": q, "bytes": len(data),
                            "bpp": bpp, **s})
        for b in BASELINES:
            m = match_rate(b, image, bpp, cache=matched)
            sb = scorer(ref, m.decoded)
            tiles.append(_tile(Image.fromarray(m.decoded), box,
                               [f"{b} q{m.quality:g}: {m.nbytes} B, {m.bpp:.3f} bpp", _scores_line(sb)]))
            numbers.append({"image": path.name, "codec": b, "quality": m.quality, "bytes": m.nbytes, "bpp": m.bpp,
                            **sb})
        rows.append(_stack(tiles, gap=4, across=True))
    return _stack(rows, gap=4, across=False), numbers


def _shown(spec: str) -> str:
    """An argument as the notes show it: a path by its last two parts (no machine's folders)."""
    path = Path(spec)
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def command_line(args: argparse.Namespace) -> str:
    """The command that made the strip, as the notes show it."""
    parts = ["python", "benchmarks/lowrate_strip.py", *(_shown(s) for s in args.images), "--out",
             _shown(args.out)]
    if args.model is not None:
        parts += ["--model", Path(args.model).name if Path(args.model).exists() else args.model]
    if args.qualities:
        parts += ["--qualities", *(f"{q:g}" for q in args.qualities)]
    elif args.points != 3:
        parts += ["--points", str(args.points)]
    if args.guidance:
        parts += ["--guidance", *(f"{g:g}" for g in args.guidance)]
    if args.size != 256:
        parts += ["--size", str(args.size)]
    return shlex.join(parts)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", help="IMAGE or IMAGE:LEFT,TOP (the crop's corner; default: the centre)")
    p.add_argument("--out", required=True,
                   help="the strip to write, PNG or JPEG by its suffix (a .md table of the numbers is written beside "
                        "it)")
    p.add_argument("--model", default=None)
    rates = p.add_mutually_exclusive_group()
    rates.add_argument("--points", type=int, default=3, help="the lowest N rate points")
    rates.add_argument("--qualities", type=float, nargs="+", default=None, metavar="Q",
                       help="these qualities (1-100) instead of the lowest --points")
    p.add_argument("--guidance", type=float, nargs="+", default=None, metavar="G",
                   help="fidelity guidance values, one SODEC tile each, all decoded from the same file (higher "
                        "stays closer to the original); default: one tile at the model's own guidance")
    p.add_argument("--size", type=int, default=256, help="crop side in px, shown 1:1")
    args = p.parse_args(argv)
    suffix = Path(args.out).suffix.lower()
    if suffix not in (".png", ".jpg", ".jpeg"):
        p.error(f"--out must end in .png or .jpg, got {args.out!r}")
    if args.qualities and not all(1 <= q <= 100 for q in args.qualities):
        p.error("--qualities must lie in 1..100")
    model = get_model(args.model)
    try:
        curves = guidance_curves(model, "SODEC", args.guidance, "auto")
    except ValueError as e:
        p.error(str(e))
    qualities = args.qualities or default_qualities(model.cfg.max_rate_position, model.cfg.num_rates)[:args.points]
    crops = []
    for spec in args.images:  # every crop checked before minutes of coding
        try:
            path, left_top = parse_image(spec)
            with Image.open(path) as im:
                crop_box(im, left_top, args.size)
        except (OSError, ValueError) as e:
            p.error(f"{spec}: {e}")
        crops.append((path, left_top))
    scorer = Scorer(crop=768)
    blocks, numbers = [], []
    for path, left_top in crops:
        block, nums = strip(path, left_top, model=model, qualities=qualities, size=args.size, scorer=scorer,
                            curves=curves)
        blocks.append(block)
        numbers += nums
    out = _stack(blocks, gap=12, across=False)
    buf = io.BytesIO()
    if suffix == ".png":
        out.save(buf, format="PNG", optimize=True)
    else:
        out.save(buf, format="JPEG", optimize=True, **JPEG)
    Path(args.out).write_bytes(buf.getvalue())
    lines = [f"Made by `{command_line(args)}` with {model.identity}; CVVDP and SSIMULACRA2 of the whole image "
             "(centre 768 px for larger ones)."]
    if any(g is not None for g in curves.values()):
        lines.append("g: the fidelity guidance the file was decoded at (higher stays closer to the original); every "
                     "g of a row decodes the same file.")
    lines += ["", "| image | codec | quality | bytes | bpp | PSNR | CVVDP | SSIMULACRA2 |",
              "|---|---|---|---|---|---|---|---|"]
    for n in numbers:
        lines.append(f"| {n['image']} | {n['codec']} | {n['quality']:g} | {n['bytes']} | {n['bpp']:.4f} | "
                     f"{n['psnr']:.2f} | {n['cvvdp']:.3f} | {n['ssimulacra2']:.2f} |")
    Path(args.out).with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"{args.out}: {out.width}x{out.height}, {len(buf.getvalue())} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
