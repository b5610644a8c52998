"""Rate-distortion evaluation of a codec against the Pillow baselines, with CSV / markdown / plot output.

The codec under test is any callable `(PIL.Image, quality) -> (data, decoded PIL.Image, enc_s, dec_s)`, so this
module does not depend on the SODEC engine. Baselines are rate-matched per image to each tested point (the codec's
real bpp on that image is the target), so both curves span the same rates and the BD figures use a common range.

One encode can make several curves: a model that reads the fidelity guidance is decoded at each guidance
value asked for from the same bytes, and each value is a curve of its own (`curves`, named by the caller); the
baselines are rate-matched once per rate point, for all of them.

Averages are plain means over images of per-image values (bpp, PSNR, MS-SSIM, CVVDP, SSIMULACRA2, seconds); the
MS-SSIM dB figure is -10*log10(1 - mean MS-SSIM), as in CompressAI's plots. What each metric scored (implementation,
display model, region) is in the result's "scoring" entry and the markdown summary.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..container import IMAGE_EXTENSIONS
from ..metrics import METRICS, ms_ssim_db, perceptual_metrics, perceptual_status
from .baselines import CODECS, DEFAULT_BASELINES, RateMatch, bpp_of, codec_unavailable, match_rate
from .bdrate import bd_psnr, bd_rate
from .cache import EvalCache
from .scores import DEFAULT_CROP, DEFAULT_METRICS, Scorer

CodecFn = Callable[[Image.Image, float], tuple[bytes, Image.Image, float, float]]
# A codec whose one encode is decoded several ways: (image, quality) -> (data, enc_s, {curve: (decoded, dec_s)}).
CurvesFn = Callable[[Image.Image, float], tuple[bytes, float, dict[str, tuple[Image.Image, float]]]]

ROW_FIELDS = ["image", "width", "height", "codec", "point", "quality", "target_bpp", "bytes", "bpp", "psnr", "ms_ssim",
              "ms_ssim_db", "enc_s", "dec_s"]
SUMMARY_FIELDS = ["codec", "point", "images", "bpp", "psnr", "ms_ssim", "ms_ssim_db", "enc_s", "dec_s"]
BD_FIELDS = ["codec", "baseline", "metric", "bd_rate_pct", "bd_quality", "range_low", "range_high", "points_codec",
             "points_baseline", "bd_rate_pct_per_image", "images_compared"]
# The BD-rate metrics, in report order: the row key and its label (MS-SSIM in dB, where codecs differ).
BD_METRICS = {"psnr": "PSNR (dB)", "ms_ssim_db": "MS-SSIM (dB)", "cvvdp": METRICS["cvvdp"].label,
              "ssimulacra2": METRICS["ssimulacra2"].label}
# The perceptual metrics scored beside PSNR and MS-SSIM (columns of their own in every table).
PERCEPTUAL = ("cvvdp", "ssimulacra2")


def list_images(folder: str | Path, limit: int | None = None) -> list[Path]:
    """Image files directly in `folder`, sorted by name so runs are reproducible."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"not a folder: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    return files[:limit] if limit is not None else files


def torch_threads(n: int) -> int:
    """Set torch's intra-op thread count; returns the previous one."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    return old


def _log(progress: bool, msg: str) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


def _measure(ref: np.ndarray, dec: np.ndarray, scorer: Scorer,
             perceptual: dict[str, Callable[[np.ndarray, np.ndarray], float]]) -> dict[str, float]:
    out = scorer(ref, dec)
    for name, fn in perceptual.items():
        out[name] = fn(ref, dec)
    return out


def scored_metrics(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The perceptual metrics that rows carry (older results have none)."""
    return [m for m in PERCEPTUAL if rows and all(m in r for r in rows)]


def _nanmean(values: Iterable[float]) -> float:
    a = np.asarray(list(values), dtype=np.float64)
    if a.size == 0 or np.all(np.isnan(a)):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(a))


def summarize(rows: Sequence[dict[str, Any]], extra_metrics: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Per (codec, point) means over images, in first-seen codec order and ascending point."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["codec"], r["point"]), []).append(r)
    order = list(dict.fromkeys(r["codec"] for r in rows))
    out = []
    for (codec, point), rs in sorted(groups.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1])):
        s: dict[str, Any] = {"codec": codec, "point": point, "images": len(rs)}
        for key in ("bpp", "psnr", "ms_ssim", "enc_s", "dec_s", *extra_metrics):
            s[key] = _nanmean(r[key] for r in rs)
        s["ms_ssim_db"] = ms_ssim_db(s["ms_ssim"])
        out.append({k: s[k] for k in (*SUMMARY_FIELDS, *extra_metrics)})
    return out


def ladder_violations(rows: Sequence[dict[str, Any]], codec_name: str) -> list[dict[str, Any]]:
    """Every place where a higher quality of `codec_name` gave a lower PSNR or MS-SSIM on an image than
    a lower quality did: a user who asks for more must never get less. Compares each point with every
    lower one of the same image (not only its neighbour)."""
    by_image: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["codec"] == codec_name:
            by_image.setdefault(r["image"], []).append(r)
    out = []
    for image, rs in by_image.items():
        rs = sorted(rs, key=lambda r: r["quality"])
        for i, hi in enumerate(rs):
            for lo in rs[:i]:
                for key in ("psnr", "ms_ssim"):
                    if math.isfinite(lo[key]) and math.isfinite(hi[key]) and hi[key] < lo[key]:
                        out.append({"codec": codec_name, "image": image, "metric": key, "quality_low": lo["quality"],
                                    "quality_high": hi["quality"], "value_low": lo[key], "value_high": hi[key],
                                    "bpp_low": lo["bpp"], "bpp_high": hi["bpp"]})
    return out


def _distinct(rates: Sequence[float], quality: Sequence[float]) -> int:
    """Distinct finite points of a curve (a baseline at its rate floor repeats one encode)."""
    return len({(r, q) for r, q in zip(rates, quality, strict=True) if math.isfinite(q)})


def bd_table(summary: Sequence[dict[str, Any]], codec_name: str, baselines: Sequence[str],
             rows: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """BD-rate (and BD-quality) of `codec_name` against each baseline on the curves averaged over images
    (CompressAI's convention), per metric; with `rows`, also the mean of the per-image BD-rates (the
    averaged curves can flatter a codec whose images differ in slope)."""
    def curve(points: Sequence[dict[str, Any]], codec: str, key: str) -> tuple[list[float], list[float]]:
        pts = [s for s in points if s["codec"] == codec]
        return [s["bpp"] for s in pts], [s[key] for s in pts]

    by_image: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_image.setdefault(r["image"], []).append(r)
    keys = [k for k in BD_METRICS if summary and all(k in s for s in summary)]
    out = []
    for base in baselines:
        for key in keys:
            ra, da = curve(summary, codec_name, key)
            rb, db = curve(summary, base, key)
            fa = [d for d in da if math.isfinite(d)]
            fb = [d for d in db if math.isfinite(d)]
            lo = max(min(fa), min(fb)) if fa and fb else math.nan
            hi = min(max(fa), max(fb)) if fa and fb else math.nan
            per_image = [bd_rate(*curve(rs, codec_name, key), *curve(rs, base, key)) for rs in by_image.values()]
            per_image = [v for v in per_image if math.isfinite(v)]
            out.append({"codec": codec_name, "baseline": base, "metric": key, "bd_rate_pct": bd_rate(ra, da, rb, db),
                        "bd_quality": bd_psnr(ra, da, rb, db), "range_low": lo, "range_high": hi,
                        "points_codec": _distinct(ra, da), "points_baseline": _distinct(rb, db),
                        "bd_rate_pct_per_image": sum(per_image) / len(per_image) if per_image else math.nan,
                        "images_compared": len(per_image)})
    return out


# The release rule (docs/releasing.md). On the high-resolution set (what users open) a new default saves at least
# RELEASE_MIN_SAVING_PCT on both metrics of one of RELEASE_SAVING_PAIRS and loses more than RELEASE_MAX_LOSS_PCT on
# none of BD_METRICS; on Kodak (the regression guard) it loses more than GUARD_MAX_LOSS_PCT on none. Each figure
# holds for the averaged curves and for the per-image mean.
RELEASE_MIN_SAVING_PCT = 3.0
RELEASE_SAVING_PAIRS = (("cvvdp", "ssimulacra2"), ("psnr", "ms_ssim_db"))
RELEASE_MAX_LOSS_PCT = 1.0
GUARD_MAX_LOSS_PCT = 0.5
_BD_KEYS = ("bd_rate_pct", "bd_rate_pct_per_image")


def load_results(path: str | Path) -> dict[str, Any]:
    """results.json of an eval folder (or the file itself)."""
    path = Path(path)
    path = path / "results.json" if path.is_dir() else path
    return json.loads(path.read_text())


def curve_names(result: dict[str, Any]) -> list[str]:
    """The curves an evaluation made of its own codec: one, named codec_name, unless it was decoded at
    several guidance values (then one per value)."""
    return list(result.get("curves") or [result["codec_name"]])


def curve_guidance(result: dict[str, Any], curve: str) -> float | None:
    """The fidelity guidance `curve` was decoded at; None where the model does not read it."""
    return result.get("guidance", {}).get(curve)


def _curve_list(result: dict[str, Any]) -> str:
    return ", ".join(repr(n) for n in curve_names(result))


def model_curve(result: dict[str, Any], name: str | None = None) -> str:
    """The curve that stands for the evaluated model as users get it: `name`, else the only curve, else
    the one decoded at the model's default guidance."""
    names = curve_names(result)
    if name is not None:
        if name not in names:
            raise ValueError(f"the evaluation of {result['codec_name']} has no curve {name!r} (its curves: "
                             f"{_curve_list(result)})")
        return name
    if len(names) == 1:
        return names[0]
    default = result.get("default_guidance")
    at_default = [n for n in names if default is not None and curve_guidance(result, n) == default]
    if len(at_default) != 1:
        raise ValueError(f"the evaluation of {result['codec_name']} holds {len(names)} curves ({_curve_list(result)}) "
                         "and none at its model's default guidance: name the one to compare")
    return at_default[0]


def curve_at(result: dict[str, Any], guidance: float | None) -> str:
    """The curve of `result` decoded at `guidance` (None: a curve of a model that does not read it): the
    curve of the guard set that goes with a curve of the main set. A result that records no guidance
    (older ones) stands for its model as users get it."""
    if "guidance" not in result:
        guidance = None
    found = [n for n in curve_names(result) if curve_guidance(result, n) == guidance]
    if len(found) != 1:
        at = "without a guidance" if guidance is None else f"at guidance {guidance:g}"
        raise ValueError(f"the evaluation of {result['codec_name']} has no curve {at} (its curves: "
                         f"{_curve_list(result)})")
    return found[0]


def _none_to_nan(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: (math.nan if v is None else v) for k, v in r.items()} for r in rows]


def compare_results(old: dict[str, Any], new: dict[str, Any], *, old_curve: str | None = None,
                    new_curve: str | None = None) -> list[dict[str, Any]]:
    """BD-rate of a curve of the new evaluation against the old model's curve, on the images both
    evaluated: averaged curves and the per-image mean, on every metric both scored. The curves are
    model_curve's of each result unless named (an evaluation at several guidance values holds one
    curve per value). The same model on both sides (an encoder change: effort, resampling) is
    compared as "NAME (old)" against NAME."""
    a, b = model_curve(old, old_curve), model_curve(new, new_curve)
    shared = sorted(set(old["images"]) & set(new["images"]))
    if not shared:
        raise ValueError("the two evaluations share no image")
    label = f"{a} (old)" if a == b else a
    rows = _none_to_nan([{**r, "codec": label} for r in old["rows"] if r["codec"] == a and r["image"] in shared]
                        + [r for r in new["rows"] if r["codec"] == b and r["image"] in shared])
    return bd_table(summarize(rows, scored_metrics(rows)), b, [label], rows)


def _worst(row: dict[str, Any]) -> float:
    """The larger (worse) of a BD row's averaged-curve and per-image BD-rates; nan when either is missing."""
    values = [row.get(k) for k in _BD_KEYS]
    if not all(isinstance(v, float) and math.isfinite(v) for v in values):
        return math.nan
    return max(values)


def _losses(bd: Sequence[dict[str, Any]], where: str, max_loss_pct: float) -> tuple[dict[str, float], list[str]]:
    """Each metric's worse BD-rate on one set, and why any of them fails: not scored, or losing more than
    `max_loss_pct`."""
    by_metric = {row["metric"]: _worst(row) for row in bd}
    why = []
    for key, label in BD_METRICS.items():
        v = by_metric.get(key, math.nan)
        if not math.isfinite(v):
            why.append(f"{where}: {label} not scored in both evaluations")
        elif v > max_loss_pct:
            why.append(f"{where}: {label} loses {v:+.2f}% (at most +{max_loss_pct:g}%)")
    return by_metric, why


def release_verdict(main: Sequence[dict[str, Any]], guard: Sequence[dict[str, Any]] | None = None) -> list[str]:
    """Why a candidate fails the release rule (empty: it passes). `main` is compare_results on the
    high-resolution set, `guard` on Kodak; None skips the guard (a partial verdict)."""
    by_metric, why = _losses(main, "high-resolution set", RELEASE_MAX_LOSS_PCT)
    if not any(all(by_metric.get(k, math.nan) <= -RELEASE_MIN_SAVING_PCT for k in pair)
               for pair in RELEASE_SAVING_PAIRS):
        pairs = " or ".join(" and ".join(BD_METRICS[k] for k in pair) for pair in RELEASE_SAVING_PAIRS)
        why.append(f"high-resolution set: saves less than {RELEASE_MIN_SAVING_PCT:g}% on {pairs}")
    if guard is not None:
        why += _losses(guard, "Kodak", GUARD_MAX_LOSS_PCT)[1]
    return why


def evaluate(folder: str | Path, codec_fn: CodecFn | CurvesFn, qualities: Sequence[float],
             baselines: Sequence[str] = DEFAULT_BASELINES, out_dir: str | Path | None = None, progress: bool = True,
             *, codec_name: str = "sodec", limit: int | None = None, device: str = "cpu",
             jobs: int = 1, metrics: Sequence[str] = DEFAULT_METRICS, crop: int | None = DEFAULT_CROP,
             cache: str | Path | None = None, curves: Sequence[str] | None = None,
             guidance: dict[str, float] | None = None, default_guidance: float | None = None) -> dict[str, Any]:
    """Evaluate `codec_fn` at each quality on every image of `folder` and rate-match the baselines to it;
    `jobs` images at once (codec_fn must then be thread-safe, as the SODEC engine is). Every point is scored
    with `metrics` (PSNR and MS-SSIM always; the perceptual ones on the centre `crop`, see scores.py), through
    the evaluation cache file `cache` (baseline encodes and scores; None: nothing kept on disk).

    With `curves` (names), codec_fn is a CurvesFn: each encode is decoded once per curve, and the baselines
    are matched to the encode's size, the same for every curve. `guidance` (curve -> the fidelity guidance
    it was decoded at) and the model's `default_guidance` are recorded in the result.

    Returns {"rows", "summary", "bdrate", "scoring", "perceptual_status", "skipped", "files", ...}; with `out_dir`
    also writes per_image.csv, summary.csv, bdrate.csv, summary.md, results.json and rd.png there.
    """
    from ..metrics import metric_unavailable

    names = list(dict.fromkeys(curves)) if curves else [codec_name]
    if curves is not None and len(names) != len(curves):
        raise ValueError(f"curve names must differ, got {list(curves)}")

    def run_codec(img: Image.Image, q: float) -> tuple[bytes, float, dict[str, tuple[Image.Image, float]]]:
        if curves:
            data, enc_s, decodes = codec_fn(img, q)
            if list(decodes) != names:
                raise RuntimeError(f"{codec_name} decoded the curves {list(decodes)}, expected {names}")
            return data, enc_s, decodes
        data, decoded, enc_s, dec_s = codec_fn(img, q)
        return data, enc_s, {codec_name: (decoded, dec_s)}

    missing = {m: r for m in metrics if (r := metric_unavailable(m))}
    if missing:
        raise RuntimeError("cannot score " + "; ".join(f"{m}: {r}" for m, r in missing.items()))
    store = EvalCache(cache)
    scorer = Scorer(metrics, crop=crop, cache=store)
    images = list_images(folder, limit)
    if not images:
        raise FileNotFoundError(f"no images in {folder}")
    qualities = [float(q) for q in qualities]
    if not qualities:
        raise ValueError("need at least one quality")
    skipped: dict[str, str] = {}
    used: list[str] = []
    for b in baselines:
        reason = codec_unavailable(b)
        if reason:
            skipped[b] = reason
            _log(progress, f"baseline {b} skipped: {reason}")
        elif b not in used and b != codec_name and b not in names:
            used.append(b)
    perceptual = perceptual_metrics(device)
    status = perceptual_status()
    extra = [m for m in PERCEPTUAL if m in scorer.metrics] + sorted(perceptual)

    def one_image(i: int, path: Path) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        with Image.open(path) as im:
            img = im.convert("RGB")
        ref = np.asarray(img, dtype=np.uint8)
        base_row = {"image": path.name, "width": img.width, "height": img.height}
        targets: dict[float, float] = {}
        for q in qualities:
            data, enc_s, decodes = run_codec(img, q)
            bpp = bpp_of(len(data), img)
            targets[q] = bpp
            for name, (decoded, dec_s) in decodes.items():
                dec = np.asarray(decoded.convert("RGB"), dtype=np.uint8)
                if dec.shape != ref.shape:
                    raise RuntimeError(f"{name} decoded {path.name} at quality {q} to {dec.shape}, expected "
                                       f"{ref.shape}")
                rows.append({**base_row, "codec": name, "point": q, "quality": q, "target_bpp": math.nan,
                             "bytes": len(data), "bpp": bpp, **_measure(ref, dec, scorer, perceptual),
                             "enc_s": float(enc_s),
                             "dec_s": float(dec_s)})
                _log(progress, f"[{i}/{len(images)}] {path.name} {name} q={q:g}: {bpp:.4f} bpp, "
                               f"{rows[-1]['psnr']:.2f} dB")
        for b in used:
            cache: dict[tuple[str, float], RateMatch] = {}
            measured: dict[float, dict[str, float]] = {}
            for q, target in targets.items():
                m = match_rate(b, img, target, cache=cache, store=store)
                if m.quality not in measured:
                    measured[m.quality] = _measure(ref, m.decoded, scorer, perceptual)
                rows.append({**base_row, "codec": b, "point": q, "quality": m.quality, "target_bpp": target,
                             "bytes": m.nbytes, "bpp": m.bpp, **measured[m.quality], "enc_s": m.enc_seconds,
                             "dec_s": m.dec_seconds})
            _log(progress, f"[{i}/{len(images)}] {path.name} {b}: {len(cache)} encodes")
        return rows

    # Images are independent; with jobs > 1 they run in threads (the encoders and torch release the
    # GIL), each with one torch thread, and rows are kept in image order.
    rows: list[dict[str, Any]] = []
    threads = torch_threads(1) if jobs > 1 else None
    try:
        with ThreadPoolExecutor(max(1, jobs)) as pool:
            for part in pool.map(one_image, range(1, len(images) + 1), images):
                rows += part
    finally:
        if threads is not None:
            torch_threads(threads)

    store.close()
    _log(progress, store.summary())
    summary = summarize(rows, extra)
    result: dict[str, Any] = {
        "codec_name": codec_name,
        "folder": str(folder),
        "images": [p.name for p in images],
        "qualities": qualities,
        "baselines": used,
        "skipped": skipped,
        "perceptual_metrics": extra,
        "scoring": scorer.describe(),
        "perceptual_status": status,
        "rows": rows,
        "summary": summary,
        "bdrate": [row for name in names for row in bd_table(summary, name, used, rows)],
        "ladder_violations": [v for name in names for v in ladder_violations(rows, name)],
        "files": {},
    }
    # Absent for one curve of a model that does not read the guidance: such results read as they always did.
    if names != [codec_name]:
        result["curves"] = names
    if guidance:
        result["guidance"] = dict(guidance)
        result["default_guidance"] = default_guidance
    if out_dir is not None:
        result["files"] = write_outputs(result, out_dir)
        _log(progress, f"wrote {', '.join(result['files'].values())}")
    return result


def _write_csv(path: Path, fields: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)


def _json_safe(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return x


def write_outputs(result: dict[str, Any], out_dir: str | Path) -> dict[str, str]:
    """Write the CSVs, summary.md, results.json (no pixels; non-finite numbers as null) and rd.png."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    extra = list(result.get("perceptual_metrics", []))
    files = {
        "per_image": out / "per_image.csv",
        "summary": out / "summary.csv",
        "bdrate": out / "bdrate.csv",
        "markdown": out / "summary.md",
        "json": out / "results.json",
        "plot": out / "rd.png",
    }
    _write_csv(files["per_image"], ROW_FIELDS + extra, result["rows"])
    _write_csv(files["summary"], SUMMARY_FIELDS + extra, result["summary"])
    _write_csv(files["bdrate"], BD_FIELDS, result["bdrate"])
    files["markdown"].write_text(format_markdown(result))
    files["json"].write_text(json.dumps(_json_safe({k: v for k, v in result.items() if k != "files"}), indent=1))
    plot_rd(result, files["plot"])
    return {k: str(v) for k, v in files.items()}


def plot_rd(result: dict[str, Any], path: str | Path) -> None:
    """bpp against each BD metric the result scored (PSNR, MS-SSIM in dB, CVVDP, SSIMULACRA2), one panel each,
    one line per codec (Agg canvas: no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    labels = dict(BD_METRICS, ms_ssim_db="MS-SSIM (dB) = -10 log10(1 - MS-SSIM)")
    keys = [k for k in BD_METRICS if result["summary"] and all(k in s for s in result["summary"])]
    cols = 2
    rows = -(-len(keys) // cols)
    fig = Figure(figsize=(12, 4.8 * rows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    codecs = list(dict.fromkeys(s["codec"] for s in result["summary"]))
    own = set(curve_names(result))
    for ax, key in zip(axes, keys, strict=False):
        for codec in codecs:
            pts = sorted((s["bpp"], s[key]) for s in result["summary"] if s["codec"] == codec
                         and math.isfinite(s["bpp"]) and math.isfinite(s[key]))
            if not pts:
                continue
            main = codec in own
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=4, label=codec,
                    linewidth=2.4 if main else 1.4, zorder=3 if main else 2)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("bits per pixel (real file size, log scale)")
        ax.set_ylabel(labels[key])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    n = len(result.get("images", []))
    fig.suptitle(f"Rate-distortion, mean over {n} image{'s' if n != 1 else ''}")
    fig.tight_layout()
    fig.savefig(str(path), dpi=110, format="png")


def _fmt(x: Any, digits: int) -> str:
    if isinstance(x, float):
        if math.isnan(x):
            return "n/a"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return f"{x:.{digits}f}"
    return str(x)


def _ladder_lines(curve: str, violations: Sequence[dict[str, Any]]) -> list[str]:
    """The quality-ladder section of one curve."""
    lines = ["", f"## Quality ladder of {curve}", ""]
    if not violations:
        return [*lines, "Monotone on every image: a higher quality never gave a lower PSNR or MS-SSIM."]
    lines += [f"{len(violations)} violations: a higher quality gave a lower value on that image.", "",
              "| image | metric | quality | value | bpp | higher quality | value | bpp |",
              "|---|---|---|---|---|---|---|---|"]
    digits = {"psnr": 2, "ms_ssim": 4}
    for v in violations:
        d = digits[v["metric"]]
        lines.append(f"| {v['image']} | {v['metric']} | {_fmt(v['quality_low'], 2)} "
                     f"| {_fmt(v['value_low'], d)} | {_fmt(v['bpp_low'], 4)} | {_fmt(v['quality_high'], 2)} "
                     f"| {_fmt(v['value_high'], d)} | {_fmt(v['bpp_high'], 4)} |")
    return lines


def format_markdown(result: dict[str, Any]) -> str:
    """The averaged RD table, the BD table and the perceptual-metric status as markdown."""
    extra = list(result.get("perceptual_metrics", []))
    name = result.get("codec_name", "codec")
    lines = [f"# Rate-distortion evaluation: {name}", ""]
    lines.append(f"{len(result.get('images', []))} images from `{result.get('folder', '')}`. Baselines are "
                 f"rate-matched per image to each {name} point (real file bpp). Values are means over images; "
                 "MS-SSIM (dB) = -10*log10(1 - mean MS-SSIM). MS-SSIM is n/a for images under 161 px on a side, "
                 "CVVDP and SSIMULACRA2 under 8 px.")
    lines.append("")
    names = curve_names(result) if "codec_name" in result else [name]
    guidance = result.get("guidance")
    if guidance:
        default = result.get("default_guidance")
        lines.append("Fidelity guidance, higher staying closer to the original"
                     + (f" (the model's default: {default:g})" if default is not None else "") + ": "
                     + "; ".join(f"{c} at {g:g}" for c, g in guidance.items()) + "."
                     + (" Each image is encoded once per point and decoded at every value: the curves share their "
                        "files, and the baselines are matched to them once." if len(names) > 1 else ""))
        lines.append("")
    head = ["codec", "point", "images", "bpp", "PSNR (dB)", "MS-SSIM", "MS-SSIM (dB)", "enc s", "dec s",
            *(METRICS[k].label if k in METRICS else k for k in extra)]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in result["summary"]:
        cells = [s["codec"], _fmt(s["point"], 2), str(s["images"]), _fmt(s["bpp"], 4), _fmt(s["psnr"], 2),
                 _fmt(s["ms_ssim"], 4), _fmt(s["ms_ssim_db"], 2), _fmt(s["enc_s"], 3), _fmt(s["dec_s"], 3),
                 *(_fmt(s[k], 4) for k in extra)]
        lines.append("| " + " | ".join(cells) + " |")
    for k, curve in enumerate(names):
        lines += ["", f"## BD-rate of {curve} against each baseline", ""]
        if k == 0:
            lines += ["Negative BD-rate: fewer bits than the baseline for the same quality. BD-quality: mean quality "
                      "gain at equal rate (dB). Piecewise-cubic (PCHIP) Bjontegaard on the curves averaged over images "
                      "(CompressAI's convention), over the shared range; n/a when the curves do not overlap.", ""]
        lines += ["| baseline | metric | BD-rate (%) | BD-quality (dB) | shared range (dB) | BD-rate per image, mean "
                  "(%) |", "|---|---|---|---|---|---|"]
        for b in result["bdrate"]:
            if b.get("codec", curve) != curve:
                continue
            rng = f"{_fmt(b['range_low'], 2)} to {_fmt(b['range_high'], 2)}" if b["range_high"] > b["range_low"] \
                else "none"
            per_image = b.get("bd_rate_pct_per_image", math.nan)
            lines.append(f"| {b['baseline']} | {BD_METRICS.get(b['metric'], b['metric'])} "
                         f"| {_fmt(b['bd_rate_pct'], 2)} | {_fmt(b['bd_quality'], 3)} | {rng} | {_fmt(per_image, 2)} "
                         f"({b.get('images_compared', 0)} images) |")
    if result.get("ladder_violations") is not None:
        for curve in names:
            lines += _ladder_lines(curve, [v for v in result["ladder_violations"] if v.get("codec", curve) == curve])
    if result.get("skipped"):
        lines += ["", "Skipped baselines:", ""]
        lines += [f"- {k}: {v}" for k, v in result["skipped"].items()]
    scoring = result.get("scoring")
    if scoring:
        lines += ["", "## What each metric scored", ""]
        lines += [f"- {BD_METRICS.get(m, METRICS[m].label if m in METRICS else m)}: {how}" for m, how in
                  scoring.items()]
    lines += ["", "## Optional perceptual metrics", ""]
    lines += [f"- {s}" for s in result.get("perceptual_status", [])]
    baseline_scales = [f"- {b}: {CODECS[b].scale}" for b in result.get("baselines", []) if b in CODECS]
    if baseline_scales:
        lines += ["", "## Baseline settings", "", *baseline_scales]
    return "\n".join(lines) + "\n"
