"""The fidelity decoder streamed over bands of rows (models/rows.py) computes what its forward computes,
at any band height and image size, with or without the engine's inference reformulations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sodec_plugin as sp
from sodec_plugin.models.sodec import SODECModel

SIZES = [(1, 1), (1, 6), (5, 1), (2, 3), (7, 4), (13, 9)]  # latent rows x columns


@pytest.fixture(scope="module", params=["tiny", "tiny-optimized", "bundled"])
def decoder(request, tiny_fidelity):
    if request.param == "bundled":  # residual blocks on two grids, sub-pixel output layer
        return sp.load_model().fidelity_decoder
    return SODECModel.from_folder(tiny_fidelity, optimize=request.param.endswith("optimized")).fidelity_decoder


@pytest.mark.parametrize("size", SIZES)
def test_streamed_rows_equal_the_forward(decoder, size: tuple[int, int]) -> None:
    channels = decoder.net[0].in_channels
    y = torch.randn(1, channels, *size, generator=torch.Generator().manual_seed(sum(size))) * 3
    y = y.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        whole = decoder(y)
        for band in (1, 2, 3, size[0]):
            parts = list(decoder.rows(y, band))
            assert len(parts) == -(-size[0] // band)
            streamed = torch.cat(parts, dim=2)
            assert streamed.shape == whole.shape
            assert (streamed - whole).abs().max().item() < 1e-4  # float rounding only


def test_a_large_image_in_many_bands_decodes_as_in_one(tiny_fidelity) -> None:
    """The engine's streamed decode at a tile that makes single-row bands equals its one-band decode."""
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (300, 90, 3), dtype=np.uint8)
    data = sp.compress(image, model=str(tiny_fidelity), quality=70)
    one = np.asarray(sp.decompress(data, model=str(tiny_fidelity), tile=64)).astype(int)
    many = np.asarray(sp.decompress(data, model=str(tiny_fidelity), tile=1)).astype(int)
    assert one.shape == (300, 90, 3) and np.abs(one - many).max() <= 1
