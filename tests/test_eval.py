"""Evaluation package: metrics, Pillow baselines and rate matching, Bjontegaard math, and the end-to-end report."""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sodec_plugin.eval import (
    CODECS,
    bd_psnr,
    bd_rate,
    codec_unavailable,
    encode_decode,
    evaluate,
    format_markdown,
    match_rate,
    ms_ssim,
    ms_ssim_db,
    perceptual_metrics,
    perceptual_status,
    psnr,
)
from sodec_plugin.eval.report import BD_FIELDS, ROW_FIELDS, SUMMARY_FIELDS
from tests.conftest import kodak_crop

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """MS-SSIM runs through torch; one thread is faster for these small crops and fair to a busy machine."""
    try:
        import torch
    except ImportError:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _noisy(a: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(a.astype(np.float64) + rng.normal(0, sigma, a.shape), 0, 255).round().astype(np.uint8)


# ---- metrics ----------------------------------------------------------------------------------------------------


def test_psnr_known_values():
    a = np.zeros((8, 8, 3), np.uint8)
    assert psnr(a, a) == math.inf
    # every sample off by 1 -> MSE 1 -> 20*log10(255)
    assert psnr(a, a + 1) == pytest.approx(20 * math.log10(255), abs=1e-9)
    # half the samples off by 2 -> MSE 2
    b = a.copy()
    b[:4] = 2
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 2), abs=1e-9)
    with pytest.raises(ValueError):
        psnr(a, np.zeros((8, 9, 3), np.uint8))


def test_ms_ssim_identical_degraded_and_too_small():
    a = np.asarray(kodak_crop(1, (0, 0, 192, 176)))
    assert ms_ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    light, heavy = ms_ssim(a, _noisy(a, 4)), ms_ssim(a, _noisy(a, 25))
    assert 0.0 < heavy < light < 1.0
    small = a[:128, :128]
    assert math.isnan(ms_ssim(small, small))  # under 161 px: nan, not an assertion error


def test_ms_ssim_db():
    assert ms_ssim_db(0.99) == pytest.approx(20.0)
    assert ms_ssim_db(0.9) == pytest.approx(10.0)
    assert ms_ssim_db(1.0) == math.inf
    assert math.isnan(ms_ssim_db(math.nan))


def test_perceptual_metrics_never_download_without_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    status = perceptual_status()
    assert len(status) == 2
    assert status[0].startswith("LPIPS: not available (") and "alexnet-owt-7be5be79.pth" in status[0]
    assert status[1].startswith("DISTS: not available (") and "vgg16-397923af.pth" in status[1]
    assert perceptual_metrics() == {}
    assert not (tmp_path / "empty-torch-home").exists()  # nothing was fetched into it


def test_lpips_uses_local_alexnet_weights(tmp_path, monkeypatch):
    pytest.importorskip("lpips")
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    from sodec_plugin.eval import metrics

    ckpt = tmp_path / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.manual_seed(0)
    feats = {k: v for k, v in torchvision.models.alexnet(weights=None).state_dict().items() if k.startswith("features")}
    torch.save(feats, ckpt / metrics.ALEXNET_FILE)  # only the backbone part is read
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    metrics._build_lpips.cache_clear()
    try:
        assert perceptual_status()[0] == "LPIPS: available (alex)"
        fn = perceptual_metrics()["lpips"]
        model = metrics._build_lpips("cpu")
        assert torch.equal(model.net.slice1._modules["0"].weight, feats["features.0.weight"])
        a = np.asarray(kodak_crop(1, (0, 0, 64, 64)))
        assert fn(a, a) == pytest.approx(0.0, abs=1e-6)
        assert fn(a, _noisy(a, 30)) > 0.0
    finally:
        metrics._build_lpips.cache_clear()


# ---- baselines ----------------------------------------------------------------------------------------------------


def _require(codec: str) -> None:
    reason = codec_unavailable(codec)
    if reason:
        pytest.skip(f"{codec} unavailable here: {reason}")


@pytest.mark.parametrize("codec", list(CODECS))
def test_baseline_round_trip(codec):
    _require(codec)
    im = kodak_crop()
    spec = CODECS[codec]
    lo_q, hi_q = spec.q_min + 0.2 * (spec.q_max - spec.q_min), spec.q_min + 0.8 * (spec.q_max - spec.q_min)
    n_lo, dec_lo, enc_s, dec_s = encode_decode(codec, im, lo_q)
    n_hi, dec_hi, _, _ = encode_decode(codec, im, hi_q)
    ref = np.asarray(im)
    assert dec_lo.dtype == np.uint8 and dec_lo.shape == ref.shape == (128, 192, 3)
    assert 0 < n_lo < n_hi < ref.nbytes  # lossy, and more quality costs more bytes
    floor = 15.0 if spec.downscale > 1 else 20.0  # a 4x-downscaled crop of 192 px is blurry by design
    assert floor < psnr(ref, dec_lo) < psnr(ref, dec_hi) < 60.0
    assert enc_s >= 0.0 and dec_s >= 0.0


def test_unknown_codec_is_reported():
    assert "unknown codec" in codec_unavailable("nope")
    with pytest.raises(RuntimeError):
        encode_decode("nope", kodak_crop(), 50)


@pytest.mark.parametrize("codec", list(CODECS))
def test_match_rate_lands_near_target(codec):
    _require(codec)
    im = kodak_crop()
    target = 1.0 / CODECS[codec].downscale ** 2 * 4 if CODECS[codec].downscale > 1 else 1.0  # reachable by each
    m = match_rate(codec, im, target)
    assert m.bpp == pytest.approx(target, rel=0.05)
    assert m.target_bpp == target and m.tries >= 1
    # the reported size is the real file size of that quality
    n, dec, _, _ = encode_decode(codec, im, m.quality)
    assert n == m.nbytes and m.bpp == pytest.approx(8 * n / (192 * 128))
    assert np.array_equal(dec, m.decoded)
    # an unreachable target clamps to (about) the lowest quality instead of failing
    low = match_rate(codec, im, 1e-4)
    spec = CODECS[codec]
    assert low.quality <= spec.q_min + 0.05 * (spec.q_max - spec.q_min)
    assert low.bpp < m.bpp


def test_match_rate_cache_reuses_encodes():
    _require("webp")
    im = kodak_crop()
    cache: dict = {}
    first = match_rate("webp", im, 0.8, cache=cache)
    again = match_rate("webp", im, 0.8, cache=cache)
    assert first.tries > 0 and again.tries == 0 and again.quality == first.quality


# ---- Bjontegaard ----------------------------------------------------------------------------------------------------


RATES = [0.25, 0.5, 1.0, 2.0]
PSNRS = [28.0, 31.0, 34.5, 38.0]


def test_bd_rate_constant_ratio():
    double = [2 * r for r in RATES]
    assert bd_rate(RATES, PSNRS, double, PSNRS) == pytest.approx(-50.0, abs=1e-9)
    assert bd_rate(double, PSNRS, RATES, PSNRS) == pytest.approx(100.0, abs=1e-9)
    assert bd_rate(RATES, PSNRS, RATES, PSNRS) == pytest.approx(0.0, abs=1e-12)


def test_bd_rate_integrates_over_shared_range_only():
    # log10 R_A = D/10 on [30, 40]; B = A + 0.01*(D - 30) on a wider [25, 45]. PCHIP is exact on linear data, so the
    # mean log gap over the shared [30, 40] is -0.05 and BD-rate = 10**-0.05 - 1.
    d_a = np.linspace(30, 40, 5)
    d_b = np.linspace(25, 45, 9)
    r_a = 10 ** (d_a / 10)
    r_b = 10 ** (d_b / 10 + 0.01 * (d_b - 30))
    expected = (10**-0.05 - 1) * 100
    assert bd_rate(r_a, d_a, r_b, d_b) == pytest.approx(expected, abs=1e-9)
    # order and duplicated points do not matter
    perm = [3, 0, 4, 1, 2, 2]
    assert bd_rate(r_a[perm], d_a[perm], r_b, d_b) == pytest.approx(expected, abs=1e-9)


def test_bd_psnr_and_degenerate_cases():
    better = [p + 1.0 for p in PSNRS]
    assert bd_psnr(RATES, better, RATES, PSNRS) == pytest.approx(1.0, abs=1e-9)
    assert bd_psnr(RATES, PSNRS, RATES, better) == pytest.approx(-1.0, abs=1e-9)
    # equal rates, +1 dB: A reaches each quality with fewer bits
    assert bd_rate(RATES, better, RATES, PSNRS) < 0
    # disjoint quality ranges, too few points, non-finite points dropped
    assert math.isnan(bd_rate(RATES, PSNRS, RATES, [p + 20 for p in PSNRS]))
    assert math.isnan(bd_rate([1.0], [30.0], RATES, PSNRS))
    assert bd_rate([*RATES, 3.0], [*PSNRS, math.inf], RATES, PSNRS) == pytest.approx(0.0, abs=1e-12)


# ---- end to end ------------------------------------------------------------------------------------------------------


def _jpeg_codec(image: Image.Image, quality: float) -> tuple[bytes, Image.Image, float, float]:
    """Stand-in for the SODEC engine: the jpeg baseline's own settings, so its BD-rate against jpeg must be ~0."""
    buf = io.BytesIO()
    t0 = time.perf_counter()
    image.save(buf, format="JPEG", **CODECS["jpeg"].kwargs(quality))
    t1 = time.perf_counter()
    data = buf.getvalue()
    dec = Image.open(io.BytesIO(data))
    dec.load()
    return data, dec.convert("RGB"), t1 - t0, time.perf_counter() - t1


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        return list(r.fieldnames or []), list(r)


def test_evaluate_end_to_end(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    kodak_crop(1, (0, 0, 192, 176)).save(folder / "b.png")
    kodak_crop(2, (100, 100, 292, 276)).save(folder / "a.png")
    (folder / "notes.txt").write_text("not an image")
    # the slower avif/jxl encoders are covered by the per-codec tests above; these three keep this test quick
    baselines = [b for b in ("jpeg", "webp", "jpeg2000") if codec_unavailable(b) is None]
    assert "jpeg" in baselines
    qualities = [25, 50, 85]
    out = tmp_path / "out"

    result = evaluate(folder, _jpeg_codec, qualities, baselines=(*baselines, "nope"), out_dir=out, progress=False,
                      codec_name="fakejpeg")

    assert result["images"] == ["a.png", "b.png"]
    assert result["baselines"] == baselines and "nope" in result["skipped"]
    n_codecs = 1 + len(baselines)
    extra = result["perceptual_metrics"]

    cols, rows = _read_csv(out / "per_image.csv")
    assert cols == ROW_FIELDS + extra
    assert len(rows) == 2 * len(qualities) * n_codecs
    for r in rows:
        assert float(r["bpp"]) > 0 and float(r["bytes"]) > 0
        assert 20.0 < float(r["psnr"]) < 60.0
        assert 0.5 < float(r["ms_ssim"]) <= 1.0  # crops are >= 161 px so MS-SSIM is defined
        if r["codec"] != "fakejpeg":
            assert r["point"] in {str(float(q)) for q in qualities}
    own = [r for r in rows if r["codec"] == "fakejpeg"]
    assert sorted({float(r["quality"]) for r in own}) == qualities

    cols, summary = _read_csv(out / "summary.csv")
    assert cols == SUMMARY_FIELDS + extra
    assert len(summary) == len(qualities) * n_codecs
    mine = [s for s in summary if s["codec"] == "fakejpeg"]
    assert [float(s["point"]) for s in mine] == [float(q) for q in qualities]
    assert float(mine[0]["bpp"]) < float(mine[1]["bpp"]) < float(mine[2]["bpp"])
    assert float(mine[0]["psnr"]) < float(mine[2]["psnr"])
    assert all(s["images"] == "2" for s in summary)

    cols, bd = _read_csv(out / "bdrate.csv")
    assert cols == BD_FIELDS
    metrics = ("psnr", "ms_ssim_db", "cvvdp", "ssimulacra2")  # every metric scored by default
    assert len(bd) == len(metrics) * len(baselines)
    assert {(b["baseline"], b["metric"]) for b in bd} == {(x, m) for x in baselines for m in metrics}
    same = {b["metric"]: float(b["bd_rate_pct"]) for b in bd if b["baseline"] == "jpeg"}
    # rate matching finds the very same JPEG encodes, so the fake codec equals the jpeg baseline
    assert all(abs(same[m]) < 1.0 for m in metrics), same
    for r in rows:
        assert 0.0 < float(r["cvvdp"]) <= 10.0 and -100.0 < float(r["ssimulacra2"]) <= 100.0
    assert set(result["scoring"]) == {"psnr", "ms_ssim", "cvvdp", "ssimulacra2"}
    assert result["bdrate"][0]["bd_rate_pct"] == pytest.approx(float(bd[0]["bd_rate_pct"]))

    md = (out / "summary.md").read_text()
    assert md == format_markdown(result)
    assert "| codec | point |" in md and "BD-rate" in md and "fakejpeg" in md
    for line in perceptual_status():
        assert line in md

    png = out / "rd.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as im:
        im.verify()
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width > 600 and im.height > 300
    assert set(result["files"]) >= {"per_image", "summary", "bdrate", "markdown", "plot"}


def test_evaluate_without_out_dir_writes_nothing(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    kodak_crop(3, (0, 0, 96, 64)).save(folder / "x.png")
    result = evaluate(folder, _jpeg_codec, [40, 80], baselines=("jpeg",), progress=False)
    assert result["files"] == {} and sorted(p.name for p in tmp_path.iterdir()) == ["images"]
    assert len(result["rows"]) == 4 and math.isnan(result["rows"][0]["ms_ssim"])  # 64 px: MS-SSIM undefined
    bd = {b["metric"]: b["bd_rate_pct"] for b in result["bdrate"]}
    assert abs(bd["psnr"]) < 1.0 and math.isnan(bd["ms_ssim_db"])
    with pytest.raises(FileNotFoundError):
        evaluate(tmp_path / "missing", _jpeg_codec, [50], progress=False)


def test_parallel_images_give_the_same_rows_in_order(tmp_path):
    import torch

    folder = tmp_path / "images"
    folder.mkdir()
    for i, name in enumerate(("c.png", "a.png", "b.png")):
        kodak_crop(i + 1, (0, 0, 96, 80)).save(folder / name)
    threads = torch.get_num_threads()
    runs = [evaluate(folder, _jpeg_codec, [30, 70], baselines=("jpeg", "webp"), progress=False, jobs=j)["rows"]
            for j in (1, 3)]
    assert torch.get_num_threads() == threads  # restored after the parallel run

    def same(a: object, b: object) -> bool:
        return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))

    assert [r["image"] for r in runs[1]][::6] == ["a.png", "b.png", "c.png"]
    for a, b in zip(*runs, strict=True):
        assert a.keys() == b.keys() and all(same(a[k], b[k]) for k in a if k not in ("enc_s", "dec_s"))


@pytest.mark.parametrize("max_position,count", [(112, 8), (128, 9), (32, 3)])
def test_default_qualities_land_on_the_rate_points(max_position, count):
    from sodec_plugin.eval.run import default_qualities
    from sodec_plugin.rates import quality_to_position

    qs = default_qualities(max_position, count)
    step = max_position // (count - 1)
    assert [quality_to_position(q, max_position) for q in qs] == list(range(0, max_position + 1, step))


def test_eval_qualities_add_halfway_points_where_the_ladders_resample():
    from sodec_plugin.eval.run import default_qualities, eval_qualities
    from sodec_plugin.rates import quality_to_position

    qs = eval_qualities(128, 9)
    assert set(default_qualities(128, 9)) < set(qs) and qs == sorted(qs)
    assert [quality_to_position(q, 128) for q in qs] == [0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 112, 128]
    assert eval_qualities(0, 1) == [100.0]


def test_default_qualities_of_a_single_rate_point_model():
    from sodec_plugin.eval.run import default_qualities

    assert default_qualities(0, 1) == [100.0]


def test_bd_table_reports_the_mean_of_per_image_bd_rates():
    from sodec_plugin.eval.report import bd_table, summarize

    rows = []
    for image, offset in (("a.png", 0.0), ("b.png", 6.0)):  # two images at very different qualities
        for i, bpp in enumerate((0.1, 0.2, 0.4, 0.8)):
            psnr = 25.0 + offset + 3.0 * i
            common = {"image": image, "width": 8, "height": 8, "point": float(i), "quality": float(i),
                      "target_bpp": math.nan, "bytes": 1, "ms_ssim": 0.9, "ms_ssim_db": psnr / 3, "enc_s": 0.0,
                      "dec_s": 0.0}
            rows.append({**common, "codec": "A", "bpp": bpp / 2, "psnr": psnr})  # half the bits of B everywhere
            rows.append({**common, "codec": "B", "bpp": bpp, "psnr": psnr})
    table = bd_table(summarize(rows, []), "A", ["B"], rows)
    psnr_row = next(t for t in table if t["metric"] == "psnr")
    assert psnr_row["bd_rate_pct_per_image"] == pytest.approx(-50.0) and psnr_row["images_compared"] == 2
    assert psnr_row["points_codec"] == psnr_row["points_baseline"] == 4


def _with_perceptual(result: dict) -> dict:
    """A result whose rows also carry CVVDP and SSIMULACRA2, made monotone from PSNR (an older results.json
    has none), so that BD-rates on all four metrics behave alike."""
    rows = [{**r, "cvvdp": r["psnr"] / 5, "ssimulacra2": 2 * r["psnr"]} for r in result["rows"]]
    return {**result, "rows": rows}


def _shifted(result: dict, name: str, *, factor: float = 1.0, **offsets: float) -> dict:
    """The result's own curve renamed, at `factor` x its rate and with `offsets` added to metric values."""
    rows = [{**r, "codec": name, "bpp": r["bpp"] * factor, **{k: r[k] + v for k, v in offsets.items()}}
            for r in result["rows"] if r["codec"] == result["codec_name"]]
    return {**result, "codec_name": name, "rows": rows}


def test_compare_two_models_and_the_release_rule(tmp_path):
    import json as _json

    from sodec_plugin.cli import main
    from sodec_plugin.eval.report import compare_results, load_results, release_verdict

    old = _with_perceptual(load_results(REPO / "docs" / "eval-kodak"))
    for factor in (0.95, 0.99, 1.02):
        bd = compare_results(old, _shifted(old, "candidate@00000000", factor=factor))
        assert {r["metric"] for r in bd} == {"psnr", "ms_ssim_db", "cvvdp", "ssimulacra2"}
        for r in bd:  # the same curve at factor x the rate: BD-rate is exactly factor - 1
            assert r["bd_rate_pct"] == pytest.approx(100 * (factor - 1), abs=1e-6)
            assert r["bd_rate_pct_per_image"] == pytest.approx(100 * (factor - 1), abs=1e-6)

    def verdict(main_set: dict, guard: dict | None) -> list[str]:
        return release_verdict(compare_results(old, main_set), None if guard is None else compare_results(old, guard))

    same = _shifted(old, "candidate@00000000")
    cases = {  # (high-resolution set, Kodak) -> passes
        "saves 5% everywhere, Kodak unchanged": (_shifted(old, "c", factor=0.95), same, True),
        "saves 2% only": (_shifted(old, "c", factor=0.98), same, False),
        "Kodak 1% worse": (_shifted(old, "c", factor=0.95), _shifted(old, "c", factor=1.01), False),
        "Kodak 0.3% worse": (_shifted(old, "c", factor=0.95), _shifted(old, "c", factor=1.003), True),
        # +0.2 JOD and +2 SSIMULACRA2 (1 dB of PSNR on this mapping): the perceptual pair alone saves enough
        "saves on the perceptual pair, PSNR and MS-SSIM unchanged":
            (_shifted(old, "c", cvvdp=0.2, ssimulacra2=2.0), same, True),
        "saves on the perceptual pair, loses on PSNR":
            (_shifted(old, "c", cvvdp=0.2, ssimulacra2=2.0, psnr=-0.5), same, False),
        "saves on PSNR and MS-SSIM, loses on CVVDP":
            (_shifted(old, "c", factor=0.95, cvvdp=-0.2), same, False),
    }
    for what, (main_set, guard, passes) in cases.items():
        why = verdict(main_set, guard)
        assert (why == []) is passes, (what, why)
    # Without the guard it is a partial verdict; with results lacking the perceptual metrics it fails and says so.
    assert verdict(_shifted(old, "c", factor=0.95), None) == []
    legacy = load_results(REPO / "docs" / "eval-kodak")
    legacy = {**legacy, "rows": [{k: v for k, v in r.items() if k not in ("cvvdp", "ssimulacra2")}
                                 for r in legacy["rows"]]}
    why = release_verdict(compare_results(legacy, _shifted(legacy, "c", factor=0.9)))
    assert any("CVVDP (JOD) not scored" in w for w in why)

    for name, result in (("old", old), ("good", cases["saves 5% everywhere, Kodak unchanged"][0]),
                         ("same", same), ("worse", _shifted(old, "c", factor=1.01))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(_json.dumps(result))
    d = lambda name: str(tmp_path / name)  # noqa: E731
    assert main(["compare", d("old"), d("good"), "--guard", d("old"), d("same")]) == 0
    assert main(["compare", d("old"), d("good"), "--guard", d("old"), d("worse")]) == 1
    assert main(["compare", d("old"), d("same")]) == 1
    # The same model on both sides (an encoder change) compares its old curve with its new one.
    itself = compare_results(old, old)
    assert itself and {r["baseline"] for r in itself} == {f"{old['rows'][0]['codec']} (old)"}
    assert all(abs(r["bd_rate_pct"]) < 1e-9 for r in itself)
    shifted = {**old, "rows": [{**r, "bpp": r["bpp"] * 0.9} for r in old["rows"]]}
    assert all(r["bd_rate_pct"] == pytest.approx(-10.0, abs=1e-6) for r in compare_results(old, shifted))


def test_ladder_violations_name_every_higher_quality_that_gave_less():
    from sodec_plugin.eval.report import ladder_violations

    def row(image, q, p, m, codec="sodec"):
        return {"image": image, "codec": codec, "quality": q, "psnr": p, "ms_ssim": m, "bpp": q / 100}

    rows = [row("a", 1, 30.0, 0.90), row("a", 50, 31.0, 0.95), row("a", 100, 30.5, 0.96),  # PSNR drops at 100
            row("b", 1, 30.0, 0.90), row("b", 50, 31.0, 0.89), row("b", 100, 32.0, 0.97),  # MS-SSIM drops at 50
            row("c", 1, 30.0, 0.90), row("c", 100, 29.0, 0.80, codec="jpeg")]  # other codecs are not judged
    found = {(v["image"], v["metric"], v["quality_low"], v["quality_high"]) for v in ladder_violations(rows, "sodec")}
    assert found == {("a", "psnr", 50, 100), ("b", "ms_ssim", 1, 50)}
    assert ladder_violations([r for r in rows if r["image"] == "c"], "sodec") == []
