"""Encoder and decoder compute identical entropy parameters whatever the threads or precision."""

from __future__ import annotations

import numpy as np
import torch

import sodec_plugin as sp
from sodec_plugin.models.sodec import SODECModel
from tests.conftest import kodak_crop


def _params(m: SODECModel, z: torch.Tensor, pos: int):
    means, idx = m.compression.codec.y_parameters(z, pos)
    return means.numpy().copy(), idx.copy()


def test_entropy_parameters_are_bit_identical_across_threads_and_dtypes(tiny_fidelity):
    m32 = SODECModel.from_folder(tiny_fidelity)
    mbf = SODECModel.from_folder(tiny_fidelity).to_runtime("cpu", torch.bfloat16)
    z = torch.randint(-6, 7, (1, m32.cfg.hyper_latent_channels, 5, 7)).double()
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = _params(m32, z, 9)
        torch.set_num_threads(2)
        b = _params(m32, z, 9)
        c = _params(mbf, z, 9)
    finally:
        torch.set_num_threads(old)
    for x, y in ((a, b), (a, c)):
        assert np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1])
    # the exact network agrees with the float one it was trained as
    fm, fs = m32.compression.prior(z.float())
    em, es = m32.compression.prior.exact(z)
    assert torch.allclose(fm.double(), em, atol=0.05) and torch.allclose(fs.double(), es, atol=0.05)


def test_file_from_a_bf16_encoder_decodes_with_fp32(tiny_fidelity):
    im = kodak_crop(15, (0, 0, 128, 128))
    mbf = SODECModel.from_folder(tiny_fidelity).to_runtime("cpu", torch.bfloat16)
    data = sp.compress(im, model=mbf)
    out = sp.decompress(data, model=SODECModel.from_folder(tiny_fidelity))
    assert out.size == (128, 128)


def test_lora_fused_at_load_equals_the_adapter(tiny_full, tmp_path):
    """Fusing LoRA into the UNet at load time gives the same eps as running the adapter."""
    m = SODECModel.from_folder(tiny_full, base_kwargs={"local_files_only": True})
    d = m.diffusion
    lora = {k: v + 0.05 * torch.randn_like(v) for k, v in d.lora_state_dict().items()}
    y_t = torch.randn(1, 4, 8, 8)
    cond = torch.randn(1, d.dcfg.guidance_tokens, d.dcfg.guidance_dim)
    d.load_base(local_files_only=True)
    d.load_lora(lora, fuse=False)
    with torch.no_grad():
        unfused = d.denoise(y_t, cond)
    d.load_base(local_files_only=True)
    d.load_lora(lora, fuse=True)
    with torch.no_grad():
        fused = d.denoise(y_t, cond)
    assert not hasattr(d.unet, "peft_config") or not d.unet.peft_config
    assert torch.allclose(unfused, fused, atol=1e-4)


def test_exact_prior_does_not_depend_on_its_row_bands(tiny_fidelity, monkeypatch):
    from sodec_plugin.models import fixed_point

    m = SODECModel.from_folder(tiny_fidelity)
    z = torch.randint(-6, 7, (1, m.cfg.hyper_latent_channels, 6, 5)).double()
    whole = _params(m, z, 3)
    monkeypatch.setattr(fixed_point, "BAND_BYTES", 1)  # one row per band
    banded = _params(m, z, 3)
    assert np.array_equal(whole[0], banded[0]) and np.array_equal(whole[1], banded[1])
