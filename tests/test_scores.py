"""The perceptual metrics, the scored region and the score cache of `sodec eval`."""

from __future__ import annotations

import numpy as np
import pytest

from sodec_plugin.eval.baselines import CODECS, encode_decode, match_rate
from sodec_plugin.eval.cache import EvalCache
from sodec_plugin.eval.scores import Scorer, centre_crop
from sodec_plugin.metrics import METRICS, metric_unavailable, score
from tests.conftest import kodak_crop


def _noisy(a: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(a.astype(np.float64) + rng.normal(0, sigma, a.shape), 0, 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.asarray(kodak_crop(1, (0, 0, 192, 160)), dtype=np.uint8)


@pytest.mark.parametrize("name", ["cvvdp", "ssimulacra2"])
def test_perceptual_metrics_rank_distortions(photo, name):
    assert metric_unavailable(name) is None
    same = score(name, photo, photo)
    light, heavy = score(name, photo, _noisy(photo, 4)), score(name, photo, _noisy(photo, 20))
    top = {"cvvdp": 10.0, "ssimulacra2": 100.0}[name]  # JOD 10 and SSIMULACRA2 100: no difference
    assert same == pytest.approx(top, abs=1e-3)
    assert same > light > heavy


@pytest.mark.parametrize("name", ["cvvdp", "ssimulacra2"])
def test_perceptual_metrics_are_nan_on_slivers(photo, name):
    for h, w in ((1, 50), (50, 1), (7, 7)):  # SSIMULACRA2 alone would say 100 here, CVVDP would raise
        assert np.isnan(score(name, photo[:h, :w], _noisy(photo, 20)[:h, :w]))
    assert np.isfinite(score(name, photo[:8, :8], _noisy(photo, 20)[:8, :8]))


def test_unknown_metric_is_refused(photo):
    assert "unknown metric" in metric_unavailable("lpips-vgg")
    with pytest.raises(RuntimeError, match="unknown metric"):
        score("nope", photo, photo)
    with pytest.raises(ValueError, match="unknown metric"):
        Scorer(["psnr", "nope"])


def test_centre_crop_is_the_middle_and_clipped():
    a = np.arange(10 * 6 * 3).reshape(10, 6, 3)
    c = centre_crop(a, 4)
    assert c.shape == (4, 4, 3) and (c == a[3:7, 1:5]).all()
    assert centre_crop(a, 8).shape == (8, 6, 3)  # the narrow side stays whole
    assert centre_crop(a, None) is a


def test_perceptual_metrics_score_the_crop_and_psnr_the_whole(photo):
    dec = _noisy(photo, 8)
    s = Scorer(["cvvdp", "ssimulacra2"], crop=96)(photo, dec)
    assert set(s) == {"psnr", "ms_ssim", "ms_ssim_db", "cvvdp", "ssimulacra2"}
    assert s["psnr"] == score("psnr", photo, dec)
    for m in ("cvvdp", "ssimulacra2"):
        assert s[m] == score(m, centre_crop(photo, 96), centre_crop(dec, 96))
        assert s[m] != score(m, photo, dec)


def test_a_second_run_reads_every_score_from_the_cache(tmp_path, photo):
    path = tmp_path / "eval-cache.sqlite"
    decodes = [_noisy(photo, s) for s in (3, 9)]
    first = EvalCache(path)
    a = [Scorer(crop=128, cache=first)(photo, d) for d in decodes]
    assert (first.misses["scores"], first.hits["scores"]) == (2 * len(METRICS), 0)
    first.close()
    second = EvalCache(path)
    b = [Scorer(crop=128, cache=second)(photo, d) for d in decodes]
    assert (second.misses["scores"], second.hits["scores"]) == (0, 2 * len(METRICS))
    assert a == b
    # Another region is another score: nothing stale is read for it.
    Scorer(crop=64, cache=second)(photo, decodes[0])
    assert second.misses["scores"] == 2  # cvvdp and ssimulacra2; PSNR and MS-SSIM score the whole image either way
    second.close()


def test_a_second_run_reads_every_baseline_encode_from_the_cache(tmp_path, photo):
    from PIL import Image

    image, path = Image.fromarray(photo), tmp_path / "eval-cache.sqlite"
    first = EvalCache(path)
    m1 = match_rate("webp", image, 0.8, store=first)
    assert first.misses["encodes"] == m1.tries > 0 and first.hits["encodes"] == 0
    first.close()
    second = EvalCache(path)
    m2 = match_rate("webp", image, 0.8, store=second)
    assert second.misses["encodes"] == 0 and second.hits["encodes"] == m2.tries == m1.tries
    assert (m2.quality, m2.nbytes) == (m1.quality, m1.nbytes) and np.array_equal(m2.decoded, m1.decoded)
    # Another photo is another encode.
    other = Image.fromarray(np.ascontiguousarray(photo[:, ::-1]))
    encode_decode("webp", other, m1.quality, cache=second)
    assert second.misses["encodes"] == 1
    second.close()


def test_downscaled_avif_reaches_below_avifs_floor(photo):
    from PIL import Image

    image = Image.fromarray(photo)
    floor = encode_decode("avif", image, CODECS["avif"].q_min)[0]
    for name, factor in (("avif-down2", 2), ("avif-down4", 4)):
        assert CODECS[name].downscale == factor
        nbytes, arr, _, _ = encode_decode(name, image, CODECS[name].q_min)
        assert arr.shape == photo.shape  # upscaled back to the image's size
        assert nbytes < floor
    target = 0.6 * 8 * floor / (image.width * image.height)
    m = match_rate("avif-down4", image, target)
    assert m.bpp < 8 * floor / (image.width * image.height)
    assert score("psnr", photo, m.decoded) > 15  # a blurry picture of the photo, not noise
