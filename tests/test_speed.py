"""The engine's exact reformulations: the same sums in another order, never other results."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sodec_plugin import container, speed
from sodec_plugin.codec import decode_file
from sodec_plugin.models.sodec import SODECModel
from tests.conftest import kodak_crop


@pytest.mark.parametrize(("cin", "cout", "h", "w"), [(64, 3, 9, 14), (8, 5, 1, 1), (16, 64, 6, 5)])
def test_a_transposed_convolution_equals_its_sub_pixel_form(cin, cout, h, w):
    torch.manual_seed(0)
    ct = nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1)
    x = torch.randn(1, cin, h, w)
    with torch.no_grad():
        ref = ct(x)
        out = torch.nn.functional.pixel_shuffle(
            torch.nn.functional.conv2d(x, speed.subpixel_weight(ct.weight), ct.bias.repeat_interleave(4), padding=1), 2)
    assert out.shape == ref.shape == (1, cout, 2 * h, 2 * w)
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5)


def test_optimize_codec_decodes_the_same_pixels_and_keeps_the_weights(tiny_fidelity):
    plain = SODECModel.from_folder(tiny_fidelity)
    fast = speed.optimize_codec(SODECModel.from_folder(tiny_fidelity))
    convs = [m for m in fast.fidelity_decoder.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert "forward" in fast.fidelity_decoder.net[-1].__dict__  # the 3-channel output layer is patched
    assert all(("forward" in m.__dict__) == (m.out_channels <= speed.SUBPIXEL_MAX_OUT_CHANNELS) for m in convs)
    import sodec_plugin as sp

    data = sp.compress(kodak_crop(3, (0, 0, 192, 128)), model=plain, quality=60)
    f = container.parse(data)
    a = np.asarray(decode_file(f, model=plain)).astype(int)
    b = np.asarray(decode_file(f, model=fast)).astype(int)
    assert np.abs(a - b).max() <= 1
    assert plain.state_dict().keys() == fast.state_dict().keys()
    for (k, v), v2 in zip(plain.state_dict().items(), fast.state_dict().values(), strict=True):
        assert torch.equal(v, v2.contiguous()), k
    # training through a patched layer takes the module's own forward (gradients flow as before)
    layer = fast.fidelity_decoder.net[-1].requires_grad_(True)
    x = torch.randn(1, layer.in_channels, 4, 4, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad is not None and layer.weight.grad is not None
