"""The checkerboard context model: exact two-pass coding, identity warm start, clean errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import sodec_plugin as sp
from sodec_plugin import entropy
from sodec_plugin.codec import decode_latents, encoder_input
from sodec_plugin.container import parse
from sodec_plugin.models.context import anchor_mask
from sodec_plugin.models.sodec import SODECModel
from sodec_plugin.train.recipe import builtin_recipes
from sodec_plugin.train.trainer import Trainer
from tests.conftest import kodak_crop
from tests.fuzz_sdc import fuzz, seed_files
from tests.test_train import data  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def tiny_context(tmp_path_factory):
    from sodec_plugin.testing import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-context"), diffusion=False, context=True)


def _image():
    return kodak_crop(7, (0, 0, 200, 136))


def test_decoder_recovers_the_encoders_latents_exactly(tiny_context):
    m = SODECModel.from_folder(tiny_context)
    comp = m.compression
    x = encoder_input(_image(), comp.codec.pad_multiple())
    f = parse(sp.compress(_image(), model=m, quality=60))
    pos = f.rate_position
    lat = comp.codec.quantize(*comp.analyse(x), pos)  # what codec.compress codes
    z_hat = comp.codec.z_hat_from_symbols(lat.z_symbols)
    _, _, means = comp.codec.code_y(z_hat, pos, lambda _m, _i, p: lat.y_symbols[:, p])
    y_hat, z_dec = decode_latents(f, SODECModel.from_folder(tiny_context))
    assert torch.equal(z_dec.double(), z_hat)
    assert torch.equal(y_hat, comp.codec.y_hat_from_symbols(lat.y_symbols, means, pos))


def test_second_pass_changes_only_the_non_anchor_parameters(tiny_context):
    comp = SODECModel.from_folder(tiny_context).compression
    z = torch.randint(-4, 5, (1, comp.cfg.hyper_latent_channels, 3, 4)).double()
    hyper_means, hyper_idx = comp.codec.y_parameters(z, 30)
    rng = np.random.default_rng(0)
    sym, idx, means = comp.codec.code_y(z, 30, lambda m, i, pos: rng.integers(-3, 4, size=i.shape).astype(np.int32))
    a = anchor_mask(*idx.shape[-2:]).numpy()
    assert np.array_equal(idx[:, a], hyper_idx[0][:, a]) and torch.equal(means[0][:, a], hyper_means[0][:, a])
    assert not np.array_equal(idx[:, ~a], hyper_idx[0][:, ~a])
    # the stream holds the anchors first, then the rest
    assert np.array_equal(comp.codec.scan(sym), np.concatenate([sym[:, a].ravel(), sym[:, ~a].ravel()]))


def test_exact_context_is_bit_identical_across_threads_and_dtypes_and_near_the_float_one(tiny_context):
    m32 = SODECModel.from_folder(tiny_context)
    mbf = SODECModel.from_folder(tiny_context).to_runtime("cpu", torch.bfloat16)
    c = m32.compression.cfg.latent_channels
    g = torch.Generator().manual_seed(0)
    symbols = torch.randint(-20, 21, (1, c, 12, 16), generator=g).double() * anchor_mask(12, 16)
    scales = torch.randint(8, 900, (1, c, 12, 16), generator=g).double() / 64
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = m32.compression.context.exact(symbols, scales)
        torch.set_num_threads(2)
        two = m32.compression.context.exact(symbols, scales)
        low = mbf.compression.context.exact(symbols, scales)
    finally:
        torch.set_num_threads(old)
    for a, b in ((one, two), (one, low)):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    fm, fs = m32.compression.context(symbols.float(), scales.float())
    rest = ~anchor_mask(12, 16)  # the exact pass computes the positions it refines, and 0 at the anchors
    assert torch.allclose(fm.double()[..., rest], one[0][..., rest], atol=0.05)
    assert torch.allclose(fs.double()[..., rest], one[1][..., rest], atol=0.05)
    assert not one[0][..., ~rest].any() and not one[1][..., ~rest].any()
    assert one[0].abs().max() > 0.1 and one[1].abs().max() > 0.1


def test_exact_context_does_not_depend_on_its_row_bands(tiny_context, monkeypatch):
    from sodec_plugin.models import fixed_point

    ctx = SODECModel.from_folder(tiny_context).compression.context
    c = ctx.context.in_channels
    g = torch.Generator().manual_seed(1)
    sym = torch.randint(-5, 6, (1, c, 9, 7), generator=g).double() * anchor_mask(9, 7)
    scales = torch.randint(8, 600, (1, c, 9, 7), generator=g).double() / 64
    whole = ctx.exact(sym, scales)
    monkeypatch.setattr(fixed_point, "BAND_BYTES", 1)  # one latent row per band
    banded = ctx.exact(sym, scales)
    assert torch.equal(whole[0], banded[0]) and torch.equal(whole[1], banded[1])


def test_hostile_inputs_cannot_leave_the_exact_range(tiny_context):
    ctx = SODECModel.from_folder(tiny_context).compression.context
    c = ctx.context.in_channels
    huge = torch.full((1, c, 6, 6), 2.0**40, dtype=torch.float64)
    for sym in (huge, -huge):
        dm, ds = ctx.exact(sym, huge)  # no "left the exact float64 range" error: every input is clamped
        assert torch.isfinite(dm).all() and torch.isfinite(ds).all()


def test_warm_start_adds_a_context_model_that_codes_the_same_image(tiny_fidelity, data, tmp_path):  # noqa: F811
    src = SODECModel.from_folder(tiny_fidelity)
    cfg = dataclasses.replace(src.cfg, name="tiny-context-warm", context_model="checkerboard", context_channels=4)
    t = Trainer(cfg, builtin_recipes()["tiny"], data, tmp_path / "run", 1, init_from=tiny_fidelity)
    warm = SODECModel.from_folder(t.model.save_pretrained(tmp_path / "warm"))
    a = sp.decompress(sp.compress(_image(), model=src, quality=70), model=src)
    b = sp.decompress(sp.compress(_image(), model=warm, quality=70), model=warm)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    t.run(max_steps=2, progress=False)
    head = t.model.compression.context.head
    assert head.weight.abs().sum() > 0  # the refinement trains
    assert all(torch.isfinite(p).all() for p in t.model.parameters())
    with pytest.raises(ValueError, match="architecture"):
        Trainer(dataclasses.replace(cfg, latent_channels=16), builtin_recipes()["tiny"], data, tmp_path / "r2", 1,
                init_from=tiny_fidelity)
    # a model with a context is continued as it is, not re-shaped
    t.export(tmp_path / "with-context")
    with pytest.raises(ValueError, match="architecture"):
        Trainer(dataclasses.replace(cfg, context_channels=8), builtin_recipes()["tiny"], data, tmp_path / "r3", 1,
                init_from=tmp_path / "with-context")


def test_unknown_context_model_is_refused():
    from sodec_plugin.config import builtin_configs

    with pytest.raises(ValueError, match="context_model"):
        SODECModel(dataclasses.replace(builtin_configs()["tiny"], context_model="serial"))


def test_stream_decoder_refuses_reading_past_its_size():
    table = entropy.CodingTable.from_pmfs([np.array([0.5, 0.5])], [0])
    stream = entropy.StreamDecoder(entropy.encode(np.zeros(4, np.int32), np.zeros(4, np.int32), table), 4, table)
    assert stream.read(np.zeros(3, np.int32)).tolist() == [0, 0, 0]
    with pytest.raises(entropy.EntropyError, match="more symbols"):
        stream.read(np.zeros(2, np.int32))


def test_mutated_context_files_only_raise_clean_errors(tiny_context):
    counts = fuzz(str(tiny_context), seed_files(str(tiny_context)), cases=150, seed=3)
    assert counts["failures"] == 0 and counts["rejected"] > 0
