"""The guided fidelity decoder: a guidance modulation that starts as the identity, reads the guidance
per image, streams like the unguided decoder, saves and loads with its default guidance, and trains on
cached latents (train/guided_decoder.py)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from sodec_plugin import codec
from sodec_plugin.config import CONFIG_NAME, SODECConfig, builtin_configs
from sodec_plugin.models.sodec import SODECModel
from sodec_plugin.train.warm_start import warm_start
from tests.conftest import kodak_crop


def _tiny(**changes: object) -> SODECConfig:
    return dataclasses.replace(builtin_configs()["tiny"], **{"diffusion": None, "name": "tiny-fidelity", **changes})


def _guided(seed: int = 0, *, randomise: bool = False) -> tuple[SODECModel, SODECModel]:
    """(an unguided tiny model, the same with a guidance modulation added by warm_start); `randomise`
    gives the modulation a random head, so that the guidance changes the picture."""
    torch.manual_seed(seed)
    src = SODECModel(_tiny()).eval()
    src.compression.codec.update_tables()
    guided = warm_start(src, _tiny(guidance_channels=8)).eval()
    if randomise:
        head = guided.fidelity_decoder.modulation.head
        with torch.no_grad():
            torch.nn.init.normal_(head.weight, std=0.5)
            torch.nn.init.normal_(head.bias, std=0.2)
    return src, guided


def test_added_modulation_decodes_exactly_as_before_at_every_guidance() -> None:
    src, guided = _guided()
    y = torch.randn(2, src.cfg.latent_channels, 4, 5)
    with torch.no_grad():
        before = src.fidelity_decoder(y)
        for g in (0.0, 0.3, 1.0, torch.tensor([0.0, 1.0])):
            assert torch.equal(guided.fidelity_decoder(y, g), before)
    assert guided.reads_guidance and not src.reads_guidance


def test_guidance_changes_the_picture_per_image_and_clamps_to_its_range() -> None:
    _, guided = _guided(randomise=True)
    dec = guided.fidelity_decoder
    y = torch.randn(1, guided.cfg.latent_channels, 4, 4)
    with torch.no_grad():
        at = {g: dec(y, g) for g in (0.0, 0.5, 1.0, 3.0)}
        both = dec(y.repeat(2, 1, 1, 1), torch.tensor([0.0, 1.0]))
    assert (at[0.0] - at[1.0]).abs().max() > 1e-3
    assert (at[0.5] - at[1.0]).abs().max() > 1e-4
    assert torch.equal(at[3.0], at[1.0])  # above 1 is the MSE end
    assert torch.allclose(both[0], at[0.0][0], atol=1e-6) and torch.allclose(both[1], at[1.0][0], atol=1e-6)


def test_the_mse_end_is_the_parent_decoder_whatever_the_modulation_learnt() -> None:
    src, guided = _guided(randomise=True)
    y = torch.randn(2, src.cfg.latent_channels, 4, 4)
    with torch.no_grad():
        assert torch.equal(guided.fidelity_decoder(y, 1.0), src.fidelity_decoder(y))
        assert not torch.allclose(guided.fidelity_decoder(y, 0.99), src.fidelity_decoder(y), atol=1e-6)


def test_streamed_rows_match_the_whole_decode_at_a_guidance() -> None:
    _, guided = _guided(randomise=True)
    dec = guided.fidelity_decoder
    y = torch.randn(1, guided.cfg.latent_channels, 9, 6)
    with torch.no_grad():
        whole = dec(y, 0.25)
        streamed = torch.cat(list(dec.rows(y, 2, 0.25)), dim=2)
        other = dec(y, 0.75)
    assert torch.allclose(streamed, whole, atol=1e-5)
    assert not torch.allclose(streamed, other, atol=1e-3)


def test_default_guidance_round_trips_and_unguided_configs_keep_their_keys(tmp_path) -> None:
    _, guided = _guided(randomise=True)
    guided.cfg = dataclasses.replace(guided.cfg, default_guidance=0.4)
    folder = guided.save_pretrained(tmp_path / "guided")
    saved = json.loads((folder / CONFIG_NAME).read_text())
    assert saved["guidance_channels"] == 8 and saved["default_guidance"] == 0.4
    loaded = SODECModel.from_folder(folder, optimize=True)
    assert loaded.cfg == guided.cfg and loaded.reads_guidance
    assert codec.resolve_guidance(loaded, None) == 0.4 and codec.resolve_guidance(loaded, 0.9) == 0.9
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="guidance"):
            codec.resolve_guidance(loaded, bad)
    plain = SODECModel(_tiny()).save_pretrained(tmp_path / "plain")
    keys = json.loads((plain / CONFIG_NAME).read_text())
    assert "guidance_channels" not in keys and "default_guidance" not in keys


def test_a_file_decodes_at_the_models_default_unless_told(tmp_path) -> None:
    _, guided = _guided(randomise=True)
    guided.cfg = dataclasses.replace(guided.cfg, default_guidance=0.0)
    folder = guided.save_pretrained(tmp_path / "guided")
    m = SODECModel.from_folder(folder, optimize=True)
    data = codec.compress(kodak_crop(1, (0, 0, 64, 64)), model=m, quality=50)
    default = codec.decompress(data, model=m)
    assert default.tobytes() == codec.decompress(data, model=m, guidance=0.0).tobytes()
    assert default.tobytes() != codec.decompress(data, model=m, guidance=1.0).tobytes()


def test_guided_training_caches_coded_latents_lowers_its_loss_and_resumes(tmp_path) -> None:
    pytest.importorskip("pycvvdp")
    pytest.importorskip("ssimulacra2")
    from sodec_plugin.train import guided_decoder
    from sodec_plugin.train.data import CropDataset

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        kodak_crop(i + 1, (0, 0, 160, 128)).save(folder / f"{i}.png")
    src, guided = _guided()
    src = SODECModel.from_folder(src.save_pretrained(tmp_path / "src"))  # a file names its model by digest
    data = CropDataset(folder, 64, downscale=1.0)
    cache = guided_decoder.cache_latents(src, data, count=6, seed=0)
    assert cache["x"].shape == (6, 3, 64, 64) and cache["x"].dtype == torch.uint8
    assert cache["y_hat"].shape == (6, src.cfg.latent_channels, 4, 4)
    # the cached y_hat is what a decoder reads from the file the codec writes at the recorded quality
    from PIL import Image

    from sodec_plugin import container

    data_bytes = codec.compress(Image.fromarray(cache["x"][0].permute(1, 2, 0).numpy()), model=src,
                                quality=int(cache["quality"][0]))
    y_hat, _ = codec.decode_latents(container.parse(data_bytes), src)
    assert torch.equal(y_hat[0].to(torch.float16), cache["y_hat"][0])
    assert float(cache["bpp"][0]) == pytest.approx(8 * len(data_bytes) / 64**2)

    loss_fn = guided_decoder.GuidedLoss()
    x, y = cache["x"].float() / 255, cache["y_hat"].float()
    t = torch.tensor([0.0, 0.0, 0.5, 0.5, 1.0, 1.0])
    with torch.no_grad():
        before, values = loss_fn(guided.fidelity_decoder(y, t), x, t)
    assert set(values) == {"psnr", "ssimulacra2", "jod"}
    out = tmp_path / "run"
    out.mkdir()
    guided_decoder.train(guided, cache, out, steps=4, batch=6, lr=1e-3, modulation_lr=1e-2, seed=0, log_every=1,
                         save_every=2)
    with torch.no_grad():
        after, _ = loss_fn(guided.fidelity_decoder(y, t), x, t)
    assert float(after) < float(before)
    state = torch.load(out / "decoder.pt", weights_only=True)
    assert state["step"] == 4
    assert (guided.fidelity_decoder.modulation.head.weight != 0).any()
    # lr 0 trains the modulation alone: the MSE end stays the parent's decoder, bit for bit
    _, frozen = _guided()
    frozen_out = tmp_path / "frozen"
    frozen_out.mkdir()
    guided_decoder.train(frozen, cache, frozen_out, steps=3, batch=6, lr=0.0, modulation_lr=1e-2, seed=0)
    with torch.no_grad():
        assert torch.equal(frozen.fidelity_decoder(y, 1.0), src.fidelity_decoder(y))
        assert not torch.equal(frozen.fidelity_decoder(y, 0.0), src.fidelity_decoder(y))
    # resuming at the last step trains no further and keeps the checkpoint's weights
    _, again = _guided()
    guided_decoder.train(again, cache, out, steps=4, batch=6, lr=1e-3, modulation_lr=1e-2, seed=0)
    assert torch.equal(again.fidelity_decoder.modulation.head.weight, guided.fidelity_decoder.modulation.head.weight)
    assert len((out / "log.jsonl").read_text().splitlines()) == 4


def test_sodec_train_decoder_stage_exports_a_guided_model_that_decodes_files_of_its_parent(tmp_path) -> None:
    pytest.importorskip("pycvvdp")
    pytest.importorskip("ssimulacra2")
    from sodec_plugin.cli import main

    data = tmp_path / "photos"
    for sub, n in (("a", 2), ("b", 1)):
        (data / sub).mkdir(parents=True)
        for i in range(n):
            kodak_crop(i + n, (0, 0, 96, 96)).save(data / sub / f"{i}.png")
    torch.manual_seed(0)
    parent = SODECModel(_tiny())
    parent = SODECModel.from_folder(parent.save_pretrained(tmp_path / "parent"))
    config = tmp_path / "guided.json"
    config.write_text(json.dumps(_tiny(guidance_channels=8, name="tiny-guided").to_dict()))
    recipe = tmp_path / "recipe.json"
    from sodec_plugin.train.recipe import builtin_recipes

    rec = builtin_recipes()["tiny"].to_dict() | {"latent_crops": [4, 2]}
    recipe.write_text(json.dumps(rec))
    out = tmp_path / "run"
    args = ["train", "--config", str(config), "--recipe", str(recipe), "--data", str(data), "--out", str(out),
            "--stage", "decoder", "--init-from", str(tmp_path / "parent")]
    assert main(args) == 0
    cache = torch.load(out / "latents.pt", weights_only=True)
    assert cache["x"].shape[0] == 6
    model = SODECModel.from_folder(out / "model", optimize=True)
    assert model.cfg.name == "tiny-guided" and model.reads_guidance
    assert torch.load(out / "decoder.pt", weights_only=True)["step"] == rec["decoder"]["steps"]
    # the encoder, entropy model and bitstream are the parent's: the same streams for the same image
    from sodec_plugin import container

    image = kodak_crop(3, (0, 0, 64, 64))
    mine, theirs = (container.parse(codec.compress(image, model=m, quality=30)) for m in (model, parent))
    assert (mine.z_stream, mine.y_stream) == (theirs.z_stream, theirs.y_stream)
    assert mine.model_id != theirs.model_id
    with pytest.raises(SystemExit):
        main(["train", "--config", str(config), "--data", str(data), "--out", str(out), "--stage", "4"])
