"""The `sodec` command line: compress, decompress, info, eval, train.

Files and folders; outputs are written atomically (temporary file, then rename), existing files
are kept unless --force, and a bad file in a batch is reported at the end with exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from .config import builtin_configs
from .container import EXTENSION, IMAGE_EXTENSIONS
from .demo import DEFAULT_HOST as DEMO_HOST
from .eval.baselines import DEFAULT_BASELINES
from .eval.cache import default_cache_path as default_eval_cache
from .eval.scores import DEFAULT_CROP, DEFAULT_METRICS
from .hub import DEFAULT_MODEL
from .rates import (
    DECODE_MODES,
    DEFAULT_EFFORT,
    MAX_EFFORT,
    RESAMPLING_CHOICES,
    describe_ladders,
    resampling_from_name,
    size_fraction,
)

if TYPE_CHECKING:
    from PIL import Image



def write_atomic(path: Path, data: bytes | Callable[[Path], None], force: bool) -> None:
    """Write bytes (or let a callable write a temp path) next to `path`, then rename over it."""
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists (use --force to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, bytes):
                f.write(data)
        if not isinstance(data, bytes):
            data(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _inputs(paths: list[str], suffixes: set[str]) -> Iterable[tuple[Path, Path]]:
    """(file, root) pairs: files as given, folders searched recursively for `suffixes`."""
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(q for q in p.rglob("*") if q.suffix.lower() in suffixes and q.is_file()):
                yield f, p
        else:
            yield p, p.parent


def _collect(paths: list[str], suffixes: set[str]) -> list[tuple[Path, Path]]:
    """Every input (see _inputs); an empty result is reported, and the caller exits 1."""
    items = list(_inputs(paths, suffixes))
    if not items:
        print("sodec: no input files", file=sys.stderr)
    return items


def _out_path(src: Path, root: Path, out: str | None, suffix: str, many: bool) -> Path:
    if out is None:
        return src.with_suffix(suffix)
    o = Path(out)
    if many or o.is_dir() or out.endswith(os.sep):
        return (o / src.relative_to(root)).with_suffix(suffix)
    return o


def _batch(args: argparse.Namespace, suffixes: set[str], out_suffix: str,
           work: Callable[[Path, Path], None]) -> int:
    """Run `work(src, dst)` over every input; a failure is reported and the batch goes on.

    Outputs are planned before any work: two inputs that would write one file (a.png and a.jpg
    -> a.sdc) both fail instead of one silently replacing the other, and an existing output
    fails (or, with --skip-existing, is skipped) before its input is coded."""
    from tqdm import tqdm

    items = _collect(args.inputs, suffixes)
    if not items:
        return 1
    many = len(items) > 1 or any(Path(p).is_dir() for p in args.inputs)
    plan = [(src, _out_path(src, root, args.output, out_suffix, many)) for src, root in items]
    sources: dict[Path, list[Path]] = {}
    for src, dst in plan:
        sources.setdefault(dst.resolve(), []).append(src)
    failures: list[tuple[Path, str]] = []
    skipped = 0
    for src, dst in tqdm(plan, disable=args.quiet or len(plan) < 2, unit="img"):
        clash = sources[dst.resolve()]
        if len(clash) > 1:
            others = ", ".join(str(o) for o in clash if o != src)
            failures.append((src, f"its output {dst} would also be written for {others}; "
                                  "rename one or code them into separate folders"))
            continue
        if dst.exists() and not args.force:
            if getattr(args, "skip_existing", False):
                skipped += 1
                continue
            failures.append((src, f"{dst} exists (use --force to overwrite, or --skip-existing)"))
            continue
        try:
            work(src, dst)
        except Exception as e:  # noqa: BLE001 - a batch goes on; every failure is reported below
            failures.append((src, f"{type(e).__name__}: {e}"))
    if skipped and not args.quiet:
        print(f"sodec: skipped {skipped} file(s) whose output exists", file=sys.stderr)
    for src, why in failures:
        print(f"sodec: failed {src}: {why}", file=sys.stderr)
    if failures:
        print(f"sodec: {len(failures)} of {len(plan)} files failed", file=sys.stderr)
    return 1 if failures else 0


def _compress(args: argparse.Namespace) -> int:
    from PIL import Image

    from .codec import compress, xmp_of

    def work(src: Path, dst: Path) -> None:
        with Image.open(src) as im:
            im.load()
            data = compress(im, model=args.model, quality=args.quality, effort=args.effort,
                            resampling=args.resampling, device=args.device, icc_profile=im.info.get("icc_profile"),
                            exif=im.info.get("exif"), xmp=xmp_of(im.info))
        write_atomic(dst, data, args.force)
        if not args.quiet and len(args.inputs) == 1 and Path(args.inputs[0]).is_file():
            print(f"{src} -> {dst}: {len(data)} bytes, {8 * len(data) / (im.width * im.height):.4f} bpp")

    return _batch(args, IMAGE_EXTENSIONS, EXTENSION, work)


def _decompress(args: argparse.Namespace) -> int:
    from .codec import decompress

    suffix = "." + args.format.lower().lstrip(".")

    def work(src: Path, dst: Path) -> None:
        im = decompress(src.read_bytes(), model=args.model, device=args.device, mode=args.mode,
                        guidance=args.guidance, tile=args.tile)
        fmt = _pil_format(dst.suffix.lower() or suffix)
        params = _metadata_params(im.info, fmt)

        def save(tmp: Path) -> None:
            try:
                im.save(tmp, format=fmt, **params)
            except (OSError, ValueError):
                if im.mode not in ("RGBA", "LA"):
                    raise
                # The format cannot store this alpha (JPEG, PCX, BMP for LA): flatten it as a viewer would.
                _flatten(im).save(tmp, format=fmt, **params)
                notes.add(f"{fmt} cannot store alpha: {im.mode} images were composited on white")

        write_atomic(dst, save, args.force)

    notes: set[str] = set()
    status = _batch(args, {EXTENSION}, suffix, work)
    for note in sorted(notes):
        if not args.quiet:
            print(f"sodec: {note}", file=sys.stderr)
    return status


def _metadata_params(info: dict, fmt: str) -> dict:
    """Save arguments that carry ICC, EXIF and XMP into `fmt` (PNG takes XMP as an iTXt chunk)."""
    params = {k: info[k] for k in ("icc_profile", "exif") if k in info}
    xmp = info.get("xmp")
    if xmp and fmt == "PNG":
        from PIL import PngImagePlugin

        png = PngImagePlugin.PngInfo()
        png.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8", "replace") if isinstance(xmp, bytes) else xmp)
        params["pnginfo"] = png
    elif xmp:
        params["xmp"] = xmp
    return params


def _flatten(im: Image.Image) -> Image.Image:
    """RGBA/LA over a white background (what a viewer shows), for formats without alpha."""
    from PIL import Image

    white = Image.new("RGBA", im.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, im.convert("RGBA")).convert("RGB" if im.mode == "RGBA" else "L")



def _pil_format(suffix: str) -> str:
    from PIL import Image

    Image.init()
    fmt = Image.EXTENSION.get(suffix)
    if fmt is None:
        raise ValueError(f"no image format for {suffix}")
    return fmt


def _info(args: argparse.Namespace) -> int:
    from .codec import read_header

    items = _collect(args.inputs, {EXTENSION})
    if not items:
        return 1
    status = 0
    for src, _ in items:
        try:
            h = read_header(src.read_bytes())
        except (OSError, ValueError) as e:
            print(f"{src}: error: {e}", file=sys.stderr)
            status = 1
            continue
        print(json.dumps({"file": str(src), **h}) if args.json else
              f"{src}: {h['width']}x{h['height']} {h['mode']}, {h['file_size']} bytes, {h['bits_per_pixel']:.4f} bpp, "
              f"model {h['model_name'] or 'unknown'} ({h['model_id']}), rate position {h['rate_position']}"
              + _resampling_note(h))
    return status


def _resampling_note(header: dict[str, object]) -> str:
    """", resampled 1/2 (coded WxH)" for a file whose streams code a smaller image; "" otherwise."""
    if header["resampling"] == 1:
        return ""
    width, height = header["coded_size"]
    return f", resampled {size_fraction(header['resampling'])} (coded {width}x{height})"


RESAMPLING_METAVAR = "{" + ",".join(map(str, RESAMPLING_CHOICES)) + "}"


def _resampling_arg(value: str) -> float | str:
    """--resampling: auto, or a factor as compress takes it."""
    try:
        return resampling_from_name(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(map(str, RESAMPLING_CHOICES))}") from None


def _eval(args: argparse.Namespace) -> int:
    from .eval.run import run_eval

    run_eval(args.folder, model=args.model, qualities=args.qualities, out_dir=args.out, device=args.device,
             baselines=args.baselines, mode=args.mode, limit=args.limit, jobs=args.jobs, effort=args.effort,
             metrics=args.metrics, crop=args.crop or None,
             cache=None if args.cache == "none" else args.cache, guidance=args.guidance,
             resampling=args.resampling)
    return 0


def _compare(args: argparse.Namespace) -> int:
    from .eval.report import (
        BD_METRICS,
        compare_results,
        curve_at,
        curve_guidance,
        curve_names,
        load_results,
        model_curve,
        release_verdict,
    )

    def one_set(old: dict, new: dict, curve: str) -> list[dict]:
        bd = compare_results(old, new, old_curve=args.old_curve, new_curve=curve)
        print(f"{curve} against {model_curve(old, args.old_curve)} on {bd[0]['images_compared']} images of "
              f"{new['folder']}")
        for row in bd:
            print(f"  {BD_METRICS[row['metric']]}: BD-rate {row['bd_rate_pct']:+.2f}% (averaged curves), "
                  f"{row['bd_rate_pct_per_image']:+.2f}% (per-image mean)")
        return bd

    old, new = load_results(args.old), load_results(args.new)
    guard = (load_results(args.guard[0]), load_results(args.guard[1])) if args.guard else None
    curves = [model_curve(new, args.curve)] if args.curve else curve_names(new)
    failed = False
    for curve in curves:
        main = one_set(old, new, curve)
        # the guard's curve of the candidate is the one decoded at the same guidance
        guarded = one_set(guard[0], guard[1], curve_at(guard[1], curve_guidance(new, curve))) if guard else None
        why = release_verdict(main, guarded)
        scope = "release rule" if guard is not None else "release rule on the high-resolution set alone (add --guard)"
        print(f"{curve + ': ' if len(curves) > 1 else ''}{scope}: " + ("passes" if not why else "fails: " +
                                                                         "; ".join(why)))
        failed = failed or bool(why)
    return 1 if failed else 0


def _train_stage(value: str) -> int | str:
    from .train.recipe import DECODER_STAGE

    if value in ("1", "2", "3"):
        return int(value)
    if value == DECODER_STAGE:
        return value
    raise argparse.ArgumentTypeError(f"choose from 1, 2, 3, {DECODER_STAGE}")


def _train(args: argparse.Namespace) -> int:
    from .train.trainer import train

    train(args.config, args.data, args.out, stage=args.stage, max_steps=args.max_steps, resume=args.resume,
          recipe=args.recipe, device=args.device, init_from=args.init_from, max_minutes=args.max_minutes)
    return 0


def _push(args: argparse.Namespace) -> int:
    from .hub import push_to_hub

    print(push_to_hub(args.folder, args.repo_id, private=args.private))
    return 0


def _download(args: argparse.Namespace) -> int:
    from .hub import fetch_release
    from .releases import BY_NAME, RELEASES, release_for

    names = [r.name for r in RELEASES] if args.names == ["all"] else args.names
    for name in names:
        release = release_for(name)
        if release is None:
            raise ValueError(f"{name!r} is not a released model (released: {', '.join(BY_NAME)})")
        print(f"{release.identity}: {fetch_release(release, local_files_only=False)}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    try:
        from .demo.app import serve

        serve(host=args.host, port=args.port, share=args.share, model=args.model, device=args.device)
    except ModuleNotFoundError as e:
        print(f"sodec: error: {e}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sodec", description="SODEC learned image codec (one-step diffusion decoder)")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("inputs", nargs="+", help="files or folders")
        sp.add_argument("-o", "--output", help="output file, or folder for several inputs")
        sp.add_argument("--model", default=None,
                        help=f"model name, folder or Hub repo id (default: the bundled {DEFAULT_MODEL})")
        sp.add_argument("--device", default=None, help="cpu, cuda, cuda:1, auto")
        sp.add_argument("-f", "--force", action="store_true", help="overwrite existing outputs")
        sp.add_argument("--skip-existing", action="store_true",
                        help="leave inputs whose output exists alone (resume a batch); counts as success")
        sp.add_argument("-q", "--quiet", action="store_true")

    c = sub.add_parser("compress", help="images -> .sdc")
    common(c)
    c.add_argument("--quality", type=float, default=None,
                   help="1 (smallest file) to 100 (best picture) across the model's rate points (default 75)")
    c.add_argument("--effort", type=int, default=DEFAULT_EFFORT, choices=range(MAX_EFFORT + 1), metavar="0-9",
                   help="encoder search, 0 (default, fastest) to 9: smaller files at the same quality, slower "
                        "encoding, the same decoder")
    c.add_argument("--resampling", type=_resampling_arg, default="auto",
                   metavar=RESAMPLING_METAVAR,
                   help="code the image at 1/F of its width and height; the decoder scales it back up (Lanczos). "
                        f"auto (default), where that looks better for the bytes: {describe_ladders()}")
    c.set_defaults(func=_compress)
    d = sub.add_parser("decompress", help=".sdc -> images")
    common(d)
    d.add_argument("--format", default="png", help="output format extension (png, jpg, webp, ...)")
    d.add_argument("--mode", default="auto", choices=DECODE_MODES)
    d.add_argument("--guidance", type=float, default=None,
                   help="fidelity guidance: higher stays closer to the original, lower looks sharper (read by "
                        "models with a diffusion path or a guided fidelity decoder; default: the model's own)")
    d.add_argument("--tile", type=int, default=None, help="decode tile in latent cells of 16 px")
    d.set_defaults(func=_decompress)
    i = sub.add_parser("info", help="print .sdc headers (no decoding)")
    i.add_argument("inputs", nargs="+")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_info)
    e = sub.add_parser("eval", help="rate-distortion evaluation against classic codecs")
    e.add_argument("folder")
    e.add_argument("--model", default=None)
    e.add_argument("--out", default="eval-out")
    e.add_argument("--qualities", type=float, nargs="+", default=None)
    e.add_argument("--baselines", nargs="*", default=list(DEFAULT_BASELINES))
    e.add_argument("--mode", default="auto", choices=DECODE_MODES)
    e.add_argument("--device", default=None)
    e.add_argument("--limit", type=int, default=None, help="only the first N images")
    e.add_argument("--effort", type=int, default=DEFAULT_EFFORT, choices=range(MAX_EFFORT + 1), metavar="0-9",
                   help="encoder effort of the SODEC points (see compress --effort)")
    e.add_argument("--resampling", type=_resampling_arg, default="auto",
                   metavar=RESAMPLING_METAVAR,
                   help="resampling of the SODEC points (see compress --resampling); a factor names the curve "
                        "'MODEL resampling=F', e.g. to compare the automatic ladder with full size (1)")
    e.add_argument("--jobs", type=int, default=1,
                   help="images evaluated at once, one torch thread each (timings are then per thread)")
    e.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS), choices=list(DEFAULT_METRICS),
                   help="metrics scored at every point (PSNR and MS-SSIM always are)")
    e.add_argument("--crop", type=int, default=DEFAULT_CROP,
                   help="the perceptual metrics score the centre CROP x CROP px of larger images (0: whole image)")
    e.add_argument("--cache", default=str(default_eval_cache()),
                   help="SQLite file of baseline encodes and scores, shared by evaluations ('none': no cache)")
    e.add_argument("--guidance", type=float, nargs="+", default=None, metavar="G",
                   help="fidelity guidance values (higher stays closer to the original), one curve each, named "
                        "'MODEL g=G'; every image is encoded once per quality and decoded at each value. Default: "
                        "the model's own guidance, one curve named MODEL. Several values need a model that reads "
                        "the guidance")
    e.set_defaults(func=_eval)
    k = sub.add_parser("compare", help="BD-rate of one model's eval against another's (the release rule)",
                       description="BD-rate of the candidate's curves against the current default's, judged by "
                                   "the release rule. An eval made at several --guidance values holds one curve per "
                                   "value ('MODEL g=G'): each curve of NEW is compared and judged on its own (the "
                                   "guard's curve of NEW is the one at the same guidance), and the exit status is 0 "
                                   "only when every one passes; --curve judges one. OLD's curve is its only one, or "
                                   "the one at its model's default guidance.")
    k.add_argument("old", help="eval folder (or results.json) of the current default, high-resolution set")
    k.add_argument("new", help="eval folder (or results.json) of the candidate, high-resolution set")
    k.add_argument("--guard", nargs=2, metavar=("OLD", "NEW"),
                   help="the two models' evals on Kodak, the regression guard of the release rule")
    k.add_argument("--curve", default=None, metavar="NAME",
                   help="judge only this curve of NEW (e.g. 'sodec-lite-13@1a2b3c4d g=0.5')")
    k.add_argument("--old-curve", default=None, metavar="NAME",
                   help="OLD's curve, where OLD holds several and none is at its model's default guidance")
    k.set_defaults(func=_compare)
    t = sub.add_parser("train", help="train a model (rate-annealing stages 1-3, or a guided decoder)")
    t.add_argument("--config", required=True,
                   help=f"built-in config ({', '.join(builtin_configs())}) or config.json")
    t.add_argument("--data", required=True, help="folder of training images")
    t.add_argument("--out", required=True, help="output folder (checkpoints, logs, model)")
    t.add_argument("--stage", type=_train_stage, default=1, metavar="{1,2,3,decoder}",
                   help="1-3: the rate-annealing stages; decoder: a guided fidelity decoder alone on latents the "
                        "--init-from model codes (the config's guidance_channels)")
    t.add_argument("--max-steps", type=int, default=None, help="stop after this global step (resume later)")
    t.add_argument("--max-minutes", type=float, default=None,
                   help="also stop (checkpoint, export model-stageN) after this much wall-clock time")
    t.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    t.add_argument("--recipe", default=None, help="built-in recipe name or recipe JSON (default: by config)")
    t.add_argument("--device", default=None)
    t.add_argument("--init-from", default=None, help="model folder to start from (default: previous stage in --out)")
    t.set_defaults(func=_train)
    h = sub.add_parser("push", help="publish a model folder to the Hugging Face Hub")
    h.add_argument("folder")
    h.add_argument("repo_id", nargs="?", default=None,
                   help="Hub repo id (a release goes to its entry in sodec_plugin/releases.py; no other id is taken)")
    h.add_argument("--private", action="store_true")
    h.set_defaults(func=_push)
    g = sub.add_parser("download", help="fetch released models into the Hugging Face cache (for offline decoding)")
    g.add_argument("names", nargs="+", help="release names (sodec-lite-10 ...), or all")
    g.set_defaults(func=_download)
    w = sub.add_parser("demo", help="a local web page: your photo in SODEC next to AVIF, JPEG XL, WebP and JPEG at "
                                    "the same size (pip install -e \".[demo]\")")
    w.add_argument("--host", default=DEMO_HOST, help=f"address to listen on (default {DEMO_HOST}: this machine only)")
    w.add_argument("--port", type=int, default=None, help="port (default: the first free one from 7860)")
    w.add_argument("--share", action="store_true",
                   help="also publish a temporary public link through Gradio's share servers (off by default)")
    w.add_argument("--model", default=None, help=f"model the page starts with (default: the bundled {DEFAULT_MODEL})")
    w.add_argument("--device", default=None, help="cpu, cuda, cuda:1, auto")
    w.set_defaults(func=_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"sodec: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
