"""Hyper gain (a gain vector per rate point on z): identity warm start, exact coding, training."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

import sodec_plugin as sp
from sodec_plugin import entropy
from sodec_plugin.codec import encoder_input
from sodec_plugin.config import SODECConfig
from sodec_plugin.container import parse
from sodec_plugin.models.sodec import SODECModel
from sodec_plugin.rates import position_to_quality
from sodec_plugin.train.recipe import builtin_recipes
from sodec_plugin.train.trainer import Trainer
from tests.conftest import kodak_crop
from tests.test_train import data  # noqa: F401 (fixture)


def _warm(tiny_fidelity, data, tmp_path):  # noqa: F811
    src = SODECModel.from_folder(tiny_fidelity)
    cfg = dataclasses.replace(src.cfg, name="tiny-hyper-gain", hyper_gain=True)
    t = Trainer(cfg, builtin_recipes()["tiny"], data, tmp_path / "run", 1, init_from=tiny_fidelity)
    return src, t


def test_warm_start_adds_a_hyper_gain_that_codes_and_decodes_the_same_image(tiny_fidelity, data, tmp_path):  # noqa: F811
    src, t = _warm(tiny_fidelity, data, tmp_path)
    warm = SODECModel.from_folder(t.model.save_pretrained(tmp_path / "warm"))
    assert json.loads((tmp_path / "warm" / "config.json").read_text())["hyper_gain"] is True
    image = kodak_crop(3, (0, 0, 200, 136))
    for quality in (1, 37, 100):  # rate points and a position between two
        data_src, data_warm = (sp.compress(image, model=m, quality=quality) for m in (src, warm))
        a, b = parse(data_src), parse(data_warm)
        assert (a.z_stream, a.y_stream) == (b.z_stream, b.y_stream)
        out_src, out_warm = sp.decompress(data_src, model=src), sp.decompress(data_warm, model=warm)
        assert np.array_equal(np.asarray(out_src), np.asarray(out_warm))

    t.run(max_steps=2, progress=False)
    comp = t.model.compression
    assert not torch.equal(comp.z_gain.detach(), torch.ones_like(comp.z_gain))  # it trains
    t.export(tmp_path / "trained")
    trained = SODECModel.from_folder(tmp_path / "trained")
    assert torch.equal(trained.compression.z_gain, comp.z_gain.detach().cpu())
    out = sp.decompress(sp.compress(image, model=trained, quality=40), model=trained)
    assert out.size == image.size


def _coded(comp, x, position: int):
    """The symbols codec.compress codes for x (its analysis, then its quantisation)."""
    return comp.codec.quantize(*comp.analyse(x), position)


def test_the_hyper_gain_sets_the_precision_of_z_and_the_decoder_reads_it_back(tiny_fidelity, data, tmp_path):  # noqa: F811
    src, t = _warm(tiny_fidelity, data, tmp_path)
    with torch.no_grad():  # the tiny random H_a gives |z| < 0.1: the low points code it much finer
        t.model.compression.z_gain[0] = 64.0
        t.model.compression.z_gain[1] = 16.0
    m = SODECModel.from_folder(t.model.save_pretrained(tmp_path / "finer"))
    comp = m.compression
    image = kodak_crop(7, (0, 0, 256, 192))
    x = encoder_input(image, comp.codec.pad_multiple())
    top = comp.cfg.max_rate_position  # the last point keeps a gain of 1
    assert np.array_equal(_coded(comp, x, top).z_symbols, _coded(src.compression, x, top).z_symbols)
    assert not _coded(src.compression, x, 0).z_symbols.any()
    for position in (0, 8):  # a rate point, and halfway to the next one (gain 40)
        lat = _coded(comp, x, position)
        assert np.abs(lat.z_symbols).max() > 1
        # the prior reads the symbols through the inverse gain: it follows the float prior on
        # the de-gained z, not on the symbols themselves
        z_hat = comp.codec.z_hat_from_symbols(lat.z_symbols)
        means, _ = comp.codec.y_parameters(z_hat, position)
        g = comp.codec.exact_gain(position)[None, :, None, None]
        with torch.no_grad():
            float_means = comp.prior(comp.codec.z_dequantized(z_hat, position).float())[0].double() * g
            ungained_means = comp.prior(z_hat.float())[0].double() * g
        tol = 0.05 * g.max().item()
        assert torch.allclose(means, float_means, atol=tol) and not torch.allclose(means, ungained_means, atol=tol)
        # and the decoder gets back what the encoder coded
        f = parse(sp.compress(image, model=m, quality=position_to_quality(position, top)))
        assert f.rate_position == position
        lc = comp.codec
        z_dec = lc.z_hat_from_symbols(entropy.decode(f.z_stream, lc.z_indexes(z_hat.shape), lc.tables()[0])
                                      .reshape(z_hat.shape[1:]))
        assert torch.equal(z_dec, z_hat)
        assert np.array_equal(comp.codec.decode_y(f.y_stream, z_dec, position)[0], lat.y_symbols)


def test_a_model_whose_hyper_gain_rounds_to_zero_is_not_saved(tiny_fidelity, data, tmp_path):  # noqa: F811
    _, t = _warm(tiny_fidelity, data, tmp_path)
    with torch.no_grad():
        t.model.compression.z_gain[1] = 1e-5
    with pytest.raises(ValueError, match="rounds to 0"):
        t.model.save_pretrained(tmp_path / "broken")


def test_configs_without_a_hyper_gain_are_written_as_before():
    assert "hyper_gain" not in SODECConfig().to_dict()
    cfg = SODECConfig(hyper_gain=True)
    assert SODECConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert "compression.z_gain" not in SODECModel(SODECConfig()).state_dict()


def test_a_hyper_gain_of_one_gives_the_prior_of_no_gain_bit_for_bit(tiny_fidelity):
    prior = SODECModel.from_folder(tiny_fidelity).compression.prior
    z = torch.randint(-20, 21, (1, prior.up1.in_channels, 6, 5)).double()
    ones = torch.ones(prior.up1.in_channels, dtype=torch.float64)
    for a, b in zip(prior.exact(z), prior.exact(z, ones), strict=True):
        assert torch.equal(a, b)
    halved = prior.exact(z, ones / 2)[0]
    assert not torch.equal(halved, prior.exact(z)[0])
