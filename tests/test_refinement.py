"""The encoder's latent search (effort): a lower loss than the analysis transform's latents, files the
released decoder reads as any other, bounded in tiles, repeatable, cancellable; the rate it measures is
the real rate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sodec_plugin as sp
from sodec_plugin import codec, container
from sodec_plugin.models import refinement
from sodec_plugin.models.refinement import RefinementLoss, refine_latents, steps_for_effort
from sodec_plugin.rates import MAX_EFFORT, check_effort
from tests.conftest import kodak_crop


@pytest.fixture(scope="module")
def model():
    return sp.load_model()  # the bundled default: the search is only worth testing on trained weights


def _latents(model, im, quality: float):
    position = codec.quality_to_position(quality, model.cfg.max_rate_position)
    x = codec.encoder_input(im, model.compression.codec.pad_multiple())
    y, z = model.compression.analyse(x)
    return x, y, z, position


def _hard_loss(model, x, y, z, position: int, im) -> float:
    target = x[..., : im.height, : im.width].float() / 255.0
    with torch.no_grad():
        return float(RefinementLoss(model.compression, model.fidelity_decoder, position,
                                    ms_ssim_weight=model.ms_ssim_weight)(y, z, target, noise=False))


@pytest.mark.parametrize("bad", [-1, MAX_EFFORT + 1, 2.5, True, "3", None])
def test_bad_effort_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="effort"):
        check_effort(bad)
    with pytest.raises(ValueError, match="effort"):
        sp.compress(kodak_crop(1, (0, 0, 64, 64)), effort=bad)


def test_effort_steps_grow() -> None:
    steps = [steps_for_effort(e) for e in range(MAX_EFFORT + 1)]
    assert steps[0] == 0 and all(a < b for a, b in zip(steps, steps[1:], strict=False))


def test_search_lowers_the_loss_and_files_decode_as_usual(model) -> None:
    im = kodak_crop(23, (100, 100, 292, 292))  # 192 x 192: the MS-SSIM term counts too
    x, y, z, position = _latents(model, im, 40)
    yr, zr = refine_latents(model.compression, model.fidelity_decoder, x, y, z, position=position,
                            steps=steps_for_effort(2), height=im.height, width=im.width,
                            ms_ssim_weight=model.ms_ssim_weight)
    assert _hard_loss(model, x, yr, zr, position, im) < _hard_loss(model, x, y, z, position, im)

    plain, searched = sp.compress(im, quality=40), sp.compress(im, quality=40, effort=2)
    assert searched != plain
    f = container.parse(searched)
    assert (f.width, f.height, f.rate_position) == (192, 192, position)
    assert f.model_hex == container.model_id_hex(model.digest)  # the same model (and decoder) reads it
    out = sp.decompress(searched)
    assert out.size == im.size and out.mode == "RGB"
    err = np.abs(np.asarray(out, dtype=float) - np.asarray(im, dtype=float)).mean()
    assert err < 12  # a faithful image, not garbage


def test_search_never_returns_worse_latents(model, monkeypatch: pytest.MonkeyPatch) -> None:
    # A step size that only makes things worse: the best latents seen (those given) come back.
    monkeypatch.setattr(refinement, "Y_LEARNING_RATE", 50.0)
    monkeypatch.setattr(refinement, "Z_LEARNING_RATE", 50.0)
    im = kodak_crop(5, (0, 0, 128, 128))
    x, y, z, position = _latents(model, im, 60)
    yr, zr = refine_latents(model.compression, model.fidelity_decoder, x, y, z, position=position, steps=10,
                            height=im.height, width=im.width, ms_ssim_weight=model.ms_ssim_weight)
    assert _hard_loss(model, x, yr, zr, position, im) <= _hard_loss(model, x, y, z, position, im)


def test_tiles_cover_the_image_and_progress_counts_steps(model, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(refinement, "TILE_CELLS", 4)  # 64 px tiles: a 192 x 128 image has 3 x 2
    im = kodak_crop(3, (0, 0, 192, 128))
    x, y, z, position = _latents(model, im, 50)
    seen: list[tuple[int, int]] = []
    yr, zr = refine_latents(model.compression, model.fidelity_decoder, x, y, z, position=position, steps=10,
                            height=im.height, width=im.width, ms_ssim_weight=model.ms_ssim_weight,
                            progress=lambda d, t: seen.append((d, t)))
    assert seen == [(i, 6 * 10) for i in range(1, 61)]
    assert yr.shape == y.shape and zr.shape == z.shape
    changed = [not torch.equal(yr[..., r:r + 4, c:c + 4], y[..., r:r + 4, c:c + 4])
               for r in range(0, y.shape[-2], 4) for c in range(0, y.shape[-1], 4)]
    assert len(changed) == 6 and sum(changed) >= 3  # a tile keeps its latents only where no step helped
    assert _hard_loss(model, x, yr, zr, position, im) < _hard_loss(model, x, y, z, position, im)


def test_search_is_repeatable_and_keeps_the_callers_random_state(model) -> None:
    im = kodak_crop(7, (0, 0, 128, 64))
    torch.manual_seed(1234)
    state = torch.random.get_rng_state()
    a = sp.compress(im, quality=30, effort=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert sp.compress(im, quality=30, effort=1) == a


def test_progress_can_cancel(model) -> None:
    class Cancelled(Exception):
        pass

    def cancel(done: int, total: int) -> None:
        raise Cancelled

    with pytest.raises(Cancelled):
        sp.compress(kodak_crop(1, (0, 0, 64, 64)), effort=1, progress=cancel)


@pytest.mark.parametrize("quality", [1, 50, 100])
def test_measured_rate_is_the_real_rate(model, quality: int) -> None:
    """The search's rate (rounded latents, the float prior) is within 20% of the real streams."""
    im = kodak_crop(23, (0, 0, 256, 192))
    x, y, z, position = _latents(model, im, quality)
    gains = RefinementLoss(model.compression, model.fidelity_decoder, position,
                           ms_ssim_weight=model.ms_ssim_weight).gains
    with torch.no_grad():
        out = model.compression.latent_forward(y, z, noise=False, **gains)
    bits = sum(float(-torch.log2(out[k]).sum()) for k in ("y_likelihoods", "z_likelihoods"))
    f = container.parse(sp.compress(im, quality=quality))
    real = 8 * (len(f.y_stream) + len(f.z_stream))
    assert 0.8 < bits / real < 1.05


@pytest.mark.parametrize("folder", [None, "tests/weights/sodec-lite", "tests/weights/sodec-lite-10"])
def test_the_search_minimises_the_loss_the_model_was_trained_with(folder: str | None) -> None:
    """Each model carries the MS-SSIM weight of its own training recipe (they differ between releases),
    and the search's loss uses it: the weight changes the loss of an image large enough for MS-SSIM."""
    from pathlib import Path

    from sodec_plugin.models.objective import DEFAULT_MS_SSIM_WEIGHT
    from sodec_plugin.releases import ENTRIES

    m = sp.load_model(None if folder is None else str(Path(__file__).resolve().parents[1] / folder))
    assert m.ms_ssim_weight == ENTRIES[m.cfg.name].recipe.get("ms_ssim_weight", DEFAULT_MS_SSIM_WEIGHT)
    im = kodak_crop(23, (100, 100, 292, 292))
    x, y, z, position = _latents(m, im, 40)
    target = x[..., : im.height, : im.width].float() / 255.0
    with torch.no_grad():
        losses = {w: float(RefinementLoss(m.compression, m.fidelity_decoder, position, ms_ssim_weight=w)(
            y, z, target, noise=False)) for w in (0.0, 0.02)}
    assert losses[0.0] < losses[0.02]
