"""Residual blocks on the latent grid and inside D_a: identity warm start, training, saving, config
compatibility."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

import sodec_plugin as sp
from sodec_plugin.config import SODECConfig
from sodec_plugin.container import parse
from sodec_plugin.models.sodec import SODECModel
from sodec_plugin.train.recipe import builtin_recipes
from sodec_plugin.train.trainer import Trainer
from tests.conftest import kodak_crop
from tests.test_train import data  # noqa: F401 (fixture)


def test_warm_start_adds_latent_blocks_that_code_and_decode_the_same_image(tiny_fidelity, data, tmp_path):  # noqa: F811
    src = SODECModel.from_folder(tiny_fidelity)
    cfg = dataclasses.replace(src.cfg, name="tiny-blocks", analysis_blocks=2, synthesis_blocks=1,
                              synthesis_blocks_1_8=1)
    t = Trainer(cfg, builtin_recipes()["tiny"], data, tmp_path / "run", 1, init_from=tiny_fidelity)
    warm = SODECModel.from_folder(t.model.save_pretrained(tmp_path / "warm"))
    decoder = warm.fidelity_decoder
    assert len(warm.compression.analysis.blocks) == 2 and len(decoder.blocks) == 1 and len(decoder.blocks_1_8) == 1
    image = kodak_crop(3, (0, 0, 200, 136))
    data_src = sp.compress(image, model=src, quality=70)
    data_warm = sp.compress(image, model=warm, quality=70)
    a, b = parse(data_src), parse(data_warm)  # the same streams (the headers name other models)
    assert (a.z_stream, a.y_stream) == (b.z_stream, b.y_stream) and len(a.y_stream) > 0
    a, b = sp.decompress(data_src, model=src), sp.decompress(data_warm, model=warm)
    assert np.array_equal(np.asarray(a), np.asarray(b))

    t.run(max_steps=2, progress=False)
    for blocks in (t.model.compression.analysis.blocks, t.model.fidelity_decoder.blocks,
                   t.model.fidelity_decoder.blocks_1_8):
        assert all(b.conv2.weight.abs().sum() > 0 for b in blocks)  # they train away from the identity
    t.export(tmp_path / "trained")
    trained = SODECModel.from_folder(tmp_path / "trained")
    assert json.loads((tmp_path / "trained" / "config.json").read_text())["analysis_blocks"] == 2
    out = sp.decompress(sp.compress(image, model=trained, quality=70), model=trained)
    assert out.size == image.size
    # blocks are appended after trained ones (as the identity again), never taken away
    more = dataclasses.replace(cfg, synthesis_blocks=2, synthesis_blocks_1_8=2)
    grown = Trainer(more, builtin_recipes()["tiny"], data, tmp_path / "r2", 1, init_from=tmp_path / "trained").model
    assert torch.equal(grown.fidelity_decoder.blocks[0].conv2.weight, trained.fidelity_decoder.blocks[0].conv2.weight)
    grown = SODECModel.from_folder(grown.save_pretrained(tmp_path / "grown"))
    data_grown = sp.compress(image, model=grown, quality=70)
    a, b = parse(sp.compress(image, model=trained, quality=70)), parse(data_grown)
    assert (a.z_stream, a.y_stream) == (b.z_stream, b.y_stream)
    assert np.array_equal(np.asarray(out), np.asarray(sp.decompress(data_grown, model=grown)))
    with pytest.raises(ValueError, match="architecture"):
        Trainer(dataclasses.replace(cfg, analysis_blocks=1), builtin_recipes()["tiny"], data, tmp_path / "r3", 1,
                init_from=tmp_path / "trained")


def test_configs_without_blocks_are_written_as_before():
    """Older readers reject unknown keys: a model without blocks must not write them."""
    assert "analysis_blocks" not in SODECConfig().to_dict()
    assert "synthesis_blocks" not in SODECConfig().to_dict()
    assert "synthesis_blocks_1_8" not in SODECConfig().to_dict()
    cfg = SODECConfig(analysis_blocks=1, synthesis_blocks=3, synthesis_blocks_1_8=2)
    assert SODECConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    m = SODECModel(cfg)
    assert m.compression.analysis.blocks is not None and len(m.fidelity_decoder.blocks) == 3
    assert len(m.fidelity_decoder.blocks_1_8) == 2
    plain = SODECModel(SODECConfig())
    assert not any("blocks" in k for k in plain.state_dict())


def test_identity_blocks_change_nothing_until_trained():
    torch.manual_seed(0)
    m = SODECModel(SODECConfig(analysis_blocks=1, synthesis_blocks=1))
    y = torch.randn(1, 128, 4, 4)
    assert torch.equal(m.fidelity_decoder.blocks(y), y)
