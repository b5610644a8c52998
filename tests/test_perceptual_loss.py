"""The differentiable SSIMULACRA2 against the `ssimulacra2` package that `sodec eval` scores with, and its
gradients where training needs them finite."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from sodec_plugin.metrics import ssimulacra2 as package_score
from sodec_plugin.train.perceptual import ssimulacra2_loss, ssimulacra2_torch
from tests.conftest import kodak_crop

pytest.importorskip("ssimulacra2")


def _jpeg(im: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def _noise(im: Image.Image, sigma: float) -> Image.Image:
    a = np.asarray(im, dtype=np.float64) + np.random.default_rng(0).normal(0.0, sigma, (im.height, im.width, 3))
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))


DISTORTIONS = {"jpeg10": lambda im: _jpeg(im, 10), "jpeg50": lambda im: _jpeg(im, 50),
               "blur": lambda im: im.filter(ImageFilter.GaussianBlur(1.5)), "noise": lambda im: _noise(im, 8.0)}


def _tensor(im: Image.Image | np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.from_numpy(np.array(im, dtype=np.float64)).permute(2, 0, 1)[None].to(dtype) / 255.0


# 256 px: all 6 scales, as in training crops; 97 x 75: odd sides at every scale and only 4 scales.
@pytest.mark.parametrize("box", [(0, 0, 256, 256), (0, 0, 97, 75)], ids=["256px", "97x75"])
def test_scores_match_the_package(box):
    ref = kodak_crop(3, box)
    for name, distort in DISTORTIONS.items():
        dist = distort(ref)
        expected = package_score(np.asarray(ref), np.asarray(dist))
        got64 = ssimulacra2_torch(_tensor(dist, torch.float64), _tensor(ref, torch.float64)).item()
        got32 = ssimulacra2_torch(_tensor(dist), _tensor(ref)).item()
        # float64 follows the package's arithmetic; float32 drifted by at most 0.006 points on kodim23 crops.
        assert got64 == pytest.approx(expected, abs=1e-6), name
        assert got32 == pytest.approx(expected, abs=0.05), name
    assert ssimulacra2_torch(_tensor(ref), _tensor(ref)).item() == 100.0


def test_batch_scores_each_image_on_its_own():
    refs = [kodak_crop(i, (0, 0, 64, 48)) for i in (1, 2)]
    x = torch.cat([_tensor(r) for r in refs])
    x_hat = torch.cat([_tensor(_jpeg(refs[0], 20)), _tensor(refs[1].filter(ImageFilter.GaussianBlur(1)))])
    batch = ssimulacra2_torch(x_hat, x)
    single = torch.cat([ssimulacra2_torch(x_hat[i : i + 1], x[i : i + 1]) for i in range(2)])
    assert batch.shape == (2,)
    torch.testing.assert_close(batch, single)
    torch.testing.assert_close(ssimulacra2_loss(x_hat, x), (100.0 - batch) / 100.0)


def _grad(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    x_hat = x_hat.clone().requires_grad_(True)
    ssimulacra2_loss(x_hat, x).sum().backward()
    return x_hat.grad


def test_gradients_are_finite_where_the_metric_is_flat_or_at_its_best():
    x = _tensor(kodak_crop(2, (0, 0, 64, 64)))
    grey = torch.full_like(x, 0.5)
    same = _grad(x, x)
    assert torch.isfinite(same).all() and same.abs().max() == 0.0  # the minimum: nothing to move
    assert torch.isfinite(_grad(grey, grey)).all()
    toward_photo = _grad(grey, x)
    assert torch.isfinite(toward_photo).all() and toward_photo.abs().max() > 0.0
    assert torch.isfinite(_grad(x, grey)).all()
    # A decoder's raw output can leave [0, 1] (negative light clamps inside the opsin cube root).
    assert torch.isfinite(_grad(x * 1.6 - 0.3, x)).all()
    near = _grad(x + 1e-4 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0)), x)
    assert torch.isfinite(near).all()


def test_gradient_matches_finite_differences():
    ref = kodak_crop(4, (0, 0, 16, 12))  # two scales, so every step of the pipeline is crossed
    x, x_hat = _tensor(ref, torch.float64), _tensor(_jpeg(ref, 30), torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: ssimulacra2_torch(a, x), (x_hat,), eps=1e-7, atol=1e-4)


def test_a_gradient_step_lowers_the_loss_of_a_blurred_image():
    ref = kodak_crop(1, (0, 0, 128, 128))
    x, x_hat = _tensor(ref), _tensor(ref.filter(ImageFilter.GaussianBlur(2)))
    before = ssimulacra2_loss(x_hat, x).item()
    grad = _grad(x_hat, x)
    stepped = x_hat - 0.02 * grad / grad.abs().max()  # at most 2% of the range per pixel
    assert ssimulacra2_loss(stepped, x).item() < before - 0.005
    halfway = ssimulacra2_loss(x_hat + 0.5 * (x - x_hat), x).item()
    assert 0.0 < halfway < before


@pytest.mark.parametrize(("x_hat", "x", "error"), [
    (torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 17), ValueError),
    (torch.rand(3, 16, 16), torch.rand(3, 16, 16), ValueError),
    (torch.rand(1, 4, 16, 16), torch.rand(1, 4, 16, 16), ValueError),
    (torch.rand(1, 3, 7, 16), torch.rand(1, 3, 7, 16), ValueError),
    (torch.zeros(1, 3, 16, 16, dtype=torch.uint8), torch.zeros(1, 3, 16, 16, dtype=torch.uint8), TypeError),
])
def test_bad_input_is_refused(x_hat, x, error):
    with pytest.raises(error):
        ssimulacra2_torch(x_hat, x)
