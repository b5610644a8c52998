"""A strip of 1:1 decoded crops at SODEC's lowest rate points, next to AVIF's answers at the same size.

Below about 0.07 bpp AVIF cannot make a photo smaller; what a user does instead is downscale it 2x or 4x,
code that, and enlarge the decode (the avif-down2 / avif-down4 baselines of `sodec eval`). Averages hide what
codecs do to edges and colour at these rates, so this draws them: one row per rate point, the original crop,
SODEC's decode and each AVIF variant rate-matched to SODEC's file (its bytes and CVVDP / SSIMULACRA2 of the
whole image under each crop).

    python benchmarks/lowrate_strip.py IMAGE[:LEFT,TOP] ... --out docs/lowrate-strip.png [--model M] [--points 3]
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from sodec_plugin import codec
from sodec_plugin.engine import get_model
from sodec_plugin.eval.baselines import match_rate
from sodec_plugin.eval.run import default_qualities
from sodec_plugin.eval.scores import Scorer

BASELINES = ("avif", "avif-down2", "avif-down4")
LABEL_H = 34


def _tile(image: Image.Image, box: tuple[int, int, int, int], lines: list[str]) -> Image.Image:
    crop = image.crop(box)
    tile = Image.new("RGB", (crop.width, crop.height + LABEL_H), "white")
    tile.paste(crop, (0, LABEL_H))
    draw = ImageDraw.Draw(tile)
    for i, line in enumerate(lines):
        draw.text((4, 2 + 15 * i), line, fill="black")
    return tile


def strip(path: Path, left_top: tuple[int, int] | None, *, model, points: int, size: int,
          scorer: Scorer) -> tuple[Image.Image, list[dict]]:
    """One block of rows for one photo, and the numbers drawn on it."""
    with Image.open(path) as im:
        image = im.convert("RGB")
    ref = np.asarray(image)
    if left_top is None:
        left_top = ((image.width - size) // 2, (image.height - size) // 2)
    box = (*left_top, left_top[0] + size, left_top[1] + size)
    qualities = default_qualities(model.cfg.max_rate_position, model.cfg.num_rates)[:points]
    rows, numbers = [], []
    for q in qualities:
        data = codec.compress(image, model=model, quality=q)
        dec = codec.decompress(data, model=model)
        bpp = 8 * len(data) / (image.width * image.height)
        s = scorer(ref, np.asarray(dec.convert("RGB")))
        tiles = [_tile(image, box, [path.stem, f"original, {image.width}x{image.height}"]),
                 _tile(dec, box, [f"SODEC q{q:g}: {len(data)} B, {bpp:.3f} bpp",
                                  f"CVVDP {s['cvvdp']:.2f}  SSIMULACRA2 {s['ssimulacra2']:.1f}"])]
        numbers.append({"image": path.name, "codec": "sodec", "quality": q, "bytes": len(data), "bpp": bpp, **s})
        for b in BASELINES:
            m = match_rate(b, image, bpp)
            sb = scorer(ref, m.decoded)
            tiles.append(_tile(Image.fromarray(m.decoded), box,
                               [f"{b} q{m.quality:g}: {m.nbytes} B, {m.bpp:.3f} bpp",
                                f"CVVDP {sb['cvvdp']:.2f}  SSIMULACRA2 {sb['ssimulacra2']:.1f}"]))
            numbers.append({"image": path.name, "codec": b, "quality": m.quality, "bytes": m.nbytes, "bpp": m.bpp,
                            **sb})
        row = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), tiles[0].height), "white")
        x = 0
        for t in tiles:
            row.paste(t, (x, 0))
            x += t.width + 4
        rows.append(row)
    block = Image.new("RGB", (rows[0].width, sum(r.height for r in rows) + 4 * (len(rows) - 1)), "white")
    y = 0
    for r in rows:
        block.paste(r, (0, y))
        y += r.height + 4
    return block, numbers


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", help="IMAGE or IMAGE:LEFT,TOP (the crop's corner; default: the centre)")
    p.add_argument("--out", required=True, help="PNG to write (a .md table of the numbers is written beside it)")
    p.add_argument("--model", default=None)
    p.add_argument("--points", type=int, default=3, help="the lowest N rate points")
    p.add_argument("--size", type=int, default=256, help="crop side in px, shown 1:1")
    args = p.parse_args()
    model = get_model(args.model)
    scorer = Scorer(crop=768)
    blocks, numbers = [], []
    for spec in args.images:
        name, _, corner = spec.partition(":")
        left_top = tuple(int(v) for v in corner.split(",")) if corner else None
        block, nums = strip(Path(name), left_top, model=model, points=args.points, size=args.size, scorer=scorer)
        blocks.append(block)
        numbers += nums
    out = Image.new("RGB", (max(b.width for b in blocks), sum(b.height for b in blocks) + 12 * (len(blocks) - 1)),
                    "white")
    y = 0
    for b in blocks:
        out.paste(b, (0, y))
        y += b.height + 12
    buf = io.BytesIO()
    out.save(buf, format="PNG", optimize=True)
    Path(args.out).write_bytes(buf.getvalue())
    shown = " ".join(f"{Path(s).parent.name}/{Path(s).name}" for s in args.images)  # no machine's folders
    lines = [f"Made by `python benchmarks/lowrate_strip.py {shown} --out {args.out}` with "
             f"{model.identity}; CVVDP and SSIMULACRA2 of the whole image (centre 768 px for larger ones).", "",
             "| image | codec | quality | bytes | bpp | PSNR | CVVDP | SSIMULACRA2 |",
             "|---|---|---|---|---|---|---|---|"]
    for n in numbers:
        lines.append(f"| {n['image']} | {n['codec']} | {n['quality']:g} | {n['bytes']} | {n['bpp']:.4f} | "
                     f"{n['psnr']:.2f} | {n['cvvdp']:.3f} | {n['ssimulacra2']:.2f} |")
    Path(args.out).with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
