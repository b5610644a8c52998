"""Hyper gain (a gain vector per rate point on z): identity warm start, exact coding, training."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import torch

import sodec_plugin as sp
from sodec_plugin.config import SODECConfig
from sodec_plugin.container import parse
from sodec_plugin.models.sodec import SODECModel
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


def test_the_hyper_gain_sets_the_precision_of_z_and_the_decoder_reads_it_back(tiny_fidelity, data, tmp_path):  # noqa: F811
    src, t = _warm(tiny_fidelity, data, tmp_path)
    with torch.no_grad():  # the tiny random H_a gives |z| < 0.1: the lowest point codes it 64x finer
        t.model.compression.z_gain[0] = 64.0
        t.model.compression.z_inverse_gain[0] = 1 / 64
    m = SODECModel.from_folder(t.model.save_pretrained(tmp_path / "finer"))
    comp = m.compression
    image = kodak_crop(7, (0, 0, 256, 192))
    x = comp.pad(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float() / 255, 64)
    lat, lat_src = comp.encode(x, 0), src.compression.encode(x, 0)
    assert not lat_src.z_symbols.any() and np.abs(lat.z_symbols).max() > 1
    top = comp.cfg.max_rate_position  # the other points keep a gain of 1
    assert np.array_equal(comp.encode(x, top).z_symbols, src.compression.encode(x, top).z_symbols)
    coded = sp.compress(image, model=m, quality=1)
    assert parse(coded).z_stream != parse(sp.compress(image, model=src, quality=1)).z_stream
    # the prior reads the symbols through the exact inverse gain: it follows the float prior on
    # the de-gained z, not on the symbols themselves
    z_hat = comp.z_hat_from_symbols(lat.z_symbols)
    means, _ = comp.y_parameters(z_hat, 0)
    g = comp.exact_gain(0)[None, :, None, None]
    with torch.no_grad():
        float_means = comp.prior(comp.z_dequantized(z_hat, 0).float())[0].double() * g
        ungained_means = comp.prior(z_hat.float())[0].double() * g
    tol = 0.05 * g.max().item()
    assert torch.allclose(means, float_means, atol=tol) and not torch.allclose(means, ungained_means, atol=tol)
    out = sp.decompress(coded, model=m)
    assert out.size == image.size and np.array_equal(np.asarray(out), np.asarray(sp.decompress(coded, model=m)))


def test_configs_without_a_hyper_gain_are_written_as_before():
    assert "hyper_gain" not in SODECConfig().to_dict()
    cfg = SODECConfig(hyper_gain=True)
    assert SODECConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert not {"compression.z_gain", "compression.z_inverse_gain"} & set(SODECModel(SODECConfig()).state_dict())
