"""The project's GDN (models/gdn.py) is compressai's, key for key and value for value, gradients included:
coding runs it without importing compressai, and training with it trains what compressai's would."""

from __future__ import annotations

import pytest
import torch

from sodec_plugin.entropy import compressai_module
from sodec_plugin.models.gdn import GDN


@pytest.mark.parametrize("inverse", [False, True])
def test_gdn_equals_compressais_in_keys_values_outputs_and_gradients(inverse: bool) -> None:
    theirs = compressai_module("compressai.layers").GDN(8, inverse=inverse)
    ours = GDN(8, inverse=inverse)
    a, b = theirs.state_dict(), ours.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)  # the same start, too
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # away from the initial values, some below the bound (where the rule differs)
        for p in theirs.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 8, 5, 7, generator=g, requires_grad=True)
    grad = torch.randn(2, 8, 5, 7, generator=g)
    outs = []
    for mod in (theirs, ours):
        out = mod(x)
        x.grad = None
        mod.zero_grad()
        out.backward(grad)
        outs.append((out.detach(), x.grad.clone(), mod.beta.grad.clone(), mod.gamma.grad.clone()))
    for t, o in zip(*outs, strict=True):
        assert torch.equal(t, o)
    with torch.no_grad():
        assert torch.equal(ours(x), outs[0][0])
