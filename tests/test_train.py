"""The three training stages on the tiny config: finite losses, annealing lowers the rate, exact resume."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from sodec_plugin.models.sodec import SODECModel
from sodec_plugin.train.recipe import TrainRecipe, builtin_recipes
from sodec_plugin.train.trainer import Trainer, train
from sodec_plugin.train.warm_start import resample_gains

TRAIN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "train"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    if not TRAIN.is_dir():
        pytest.skip(f"training images not found at {TRAIN}")
    out = tmp_path_factory.mktemp("data")
    for f in sorted(TRAIN.glob("bsds500_train_*.jpg"))[:4]:
        shutil.copy(f, out / f.name)
    return out


def _rows(out: Path, stage: int | None = None) -> list[dict[str, str]]:
    rows = []
    for s in (stage,) if stage else (1, 2, 3):
        if (out / f"log-stage{s}.csv").exists():
            with open(out / f"log-stage{s}.csv") as f:
                rows += list(csv.DictReader(f))
    return rows


@pytest.fixture(scope="module")
def stage_runs(data, tmp_path_factory, tiny_full) -> Path:
    out = tmp_path_factory.mktemp("run")
    for stage in (1, 2, 3):
        train("tiny", str(data), str(out), stage=stage, progress=False)
    return out


def test_each_stage_runs_with_finite_losses_and_exports(stage_runs, data):
    rows = _rows(stage_runs)
    assert {r["stage"] for r in rows} == {"1", "2", "3"}
    assert all(torch.isfinite(torch.tensor(float(r["loss"]))) for r in rows)
    for stage in (1, 2, 3):
        m = SODECModel.from_folder(stage_runs / f"model-stage{stage}")
        assert m.has_diffusion and m.digest
    assert (stage_runs / "model" / "README.md").is_file()
    meta_card = (stage_runs / "model" / "README.md").read_text()
    assert "data_sha256" in meta_card and "git_commit" in meta_card
    from safetensors import safe_open

    with safe_open(str(stage_runs / "model" / "model.safetensors"), framework="pt") as f:
        training = json.loads(f.metadata()["training"])
    assert training["data_list"] == sorted(p.name for p in data.iterdir()) and training["data_files"] == 4
    assert not training["command"].startswith("/")  # the program's name, not one machine's install path
    assert "training files are listed" in meta_card


def test_stage3_rate_falls_as_the_rate_weight_rises(stage_runs, data):
    rows = _rows(stage_runs, 3)
    weights = [float(r["rate_weight"]) for r in rows]
    assert weights == sorted(weights) and weights[0] < weights[-1]
    low = [float(r["bpp"]) for r in rows if float(r["rate_weight"]) == weights[0]]
    high = [float(r["bpp"]) for r in rows if float(r["rate_weight"]) == weights[-1]]
    assert sum(high) / len(high) < sum(low) / len(low)


def test_resume_continues_exactly(data, tmp_path):
    full = train("tiny", str(data), str(tmp_path / "a"), stage=1, progress=False)
    train("tiny", str(data), str(tmp_path / "b"), stage=1, max_steps=2, progress=False)
    t = Trainer(full.cfg, full.recipe, data, tmp_path / "b", 1)
    assert t.resume() and t.step == 2
    t.run(progress=False)
    a = dict(full.model.named_parameters())
    b = dict(t.model.named_parameters())
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    la = [r["loss"] for r in _rows(tmp_path / "a")]
    lb = [r["loss"] for r in _rows(tmp_path / "b")]
    assert la == lb


def test_a_time_limit_stops_with_a_checkpoint_and_weights(data, tmp_path):
    """--max-minutes (a machine available for a fixed time): the run ends early but leaves a checkpoint
    to resume from and the weights it reached, never a finished `model/` it did not finish."""
    out = tmp_path / "run"
    recipe = dataclasses.replace(builtin_recipes()["tiny"], log_every=50, checkpoint_every=50)
    (tmp_path / "recipe.json").write_text(json.dumps(recipe.to_dict()))
    t = train("tiny", str(data), str(out), stage=1, progress=False, max_minutes=0, recipe=str(tmp_path / "recipe.json"))
    assert t.step == 1 < t.sr.steps
    assert not (out / "model").exists()
    assert [r["step"] for r in _rows(out, 1)] == ["1"]  # the last step is logged, as at a normal end
    from safetensors import safe_open

    with safe_open(str(out / "model-stage1" / "model.safetensors"), framework="pt") as f:
        assert json.loads(f.metadata()["training"])["steps"] == 1
    resumed = Trainer(t.cfg, t.recipe, data, out, 1)
    assert resumed.resume() and resumed.step == 1


def test_resample_gains_keeps_shared_points_and_interpolates_in_log_lambda():
    g = torch.tensor([[1.0, 2.0], [4.0, 8.0]])
    out = resample_gains(g, (0.001, 0.004), (0.0005, 0.001, 0.002, 0.004))
    assert torch.allclose(out[1], g[0]) and torch.allclose(out[3], g[1])
    assert torch.allclose(out[2], torch.tensor([2.0, 4.0]))  # geometric midpoint
    assert torch.allclose(out[0], torch.tensor([0.5, 1.0]))  # extrapolated along the first segment


def test_init_from_a_model_with_other_rate_points(data, tmp_path, tiny_fidelity):
    src = SODECModel.from_folder(tiny_fidelity)
    cfg = dataclasses.replace(src.cfg, name="tiny-more-rates", rate_lambdas=(0.0005,) + src.cfg.rate_lambdas)
    (tmp_path / "cfg").mkdir()
    cfg.save(tmp_path / "cfg")
    t = Trainer(cfg, builtin_recipes()["tiny"], data, tmp_path / "run", 1, init_from=tiny_fidelity)
    assert t.model.cfg == cfg and t.model.compression.gain.shape[0] == src.cfg.num_rates + 1
    assert torch.allclose(t.model.compression.gain[1:], src.compression.gain)
    own, ref = t.model.state_dict(), src.state_dict()
    assert all(torch.equal(own[k], ref[k]) for k in ref if "gain" not in k)
    t.run(max_steps=2, progress=False)
    assert all(torch.isfinite(p).all() for p in t.model.parameters())
    wider = dataclasses.replace(cfg, latent_channels=cfg.latent_channels * 2)
    with pytest.raises(ValueError, match="architecture"):
        Trainer(wider, builtin_recipes()["tiny"], data, tmp_path / "run2", 1, init_from=tiny_fidelity)


def test_tensorboard_log_matches_the_csv(stage_runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(stage_runs / "tensorboard"))
    acc.Reload()
    for stage in (1, 2, 3):
        rows = _rows(stage_runs, stage)
        events = acc.Scalars(f"stage{stage}/loss")
        assert [e.step for e in events] == [int(r["step"]) for r in rows]
        assert [e.value for e in events] == pytest.approx([float(r["loss"]) for r in rows], rel=1e-6)


def test_two_processes_train_one_model(data, tmp_path, tiny_full):
    """`torchrun`/`accelerate launch` with 2 CPU processes (gloo): each rank sees its own crops
    and the gradient all-reduce keeps the replicas identical (the aux loss, a function of the
    entropy bottleneck's weights, matches across ranks at every step)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "sodec_plugin.cli", "train", "--config", "tiny", "--data", str(data), "--out", str(tmp_path)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    with open(tmp_path / "log-stage1.csv") as f0, open(tmp_path / "log-stage1-rank1.csv") as f1:
        rank0, rank1 = list(csv.DictReader(f0)), list(csv.DictReader(f1))
    assert [r["step"] for r in rank0] == [r["step"] for r in rank1] == ["1", "2", "3", "4"]
    assert [r["aux"] for r in rank0] == [r["aux"] for r in rank1]
    assert [r["loss"] for r in rank0] != [r["loss"] for r in rank1]
    assert SODECModel.from_folder(tmp_path / "model").digest


def test_two_processes_stop_on_time_together(data, tmp_path):
    """--max-minutes under torchrun: both ranks stop at the same step and rank 0 exports model-stage1.
    (The ranks decide together, Trainer._any_rank; this run does not force their clocks apart, so it
    checks the distributed stop end to end, not that race itself.)"""
    import os
    import subprocess
    import sys

    recipe = dataclasses.replace(builtin_recipes()["tiny"], stage1=dataclasses.replace(
        builtin_recipes()["tiny"].stage1, steps=10_000))
    (tmp_path / "recipe.json").write_text(json.dumps(recipe.to_dict()))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "sodec_plugin.cli", "train", "--config", "tiny", "--data", str(data), "--out", str(tmp_path / "run"),
           "--recipe", str(tmp_path / "recipe.json"), "--max-minutes", "0.1"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    with open(tmp_path / "run" / "log-stage1.csv") as f0, open(tmp_path / "run" / "log-stage1-rank1.csv") as f1:
        last0, last1 = list(csv.DictReader(f0))[-1], list(csv.DictReader(f1))[-1]
    assert last0["step"] == last1["step"] and 1 <= int(last0["step"]) < 10_000
    assert (tmp_path / "run" / "model-stage1").is_dir() and not (tmp_path / "run" / "model").exists()


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_diffusion_stage(stage_runs, data, tmp_path, precision):
    """Autocast in the diffusion stages; fp16 adds a GradScaler whose state is checkpointed."""
    rec = dataclasses.replace(builtin_recipes()["tiny"], mixed_precision=precision)
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(rec.to_dict()))
    t = train("tiny", str(data), str(tmp_path / "run"), stage=3, max_steps=3, recipe=str(path), progress=False,
              init_from=str(stage_runs / "model-stage2"))
    rows = _rows(tmp_path / "run", 3)
    assert len(rows) == 3 and all(math.isfinite(float(r["loss"])) for r in rows)
    assert t.scaler.is_enabled() == (precision == "fp16")
    state = torch.load(tmp_path / "run" / "checkpoints" / "stage3-last.pt", weights_only=True)
    assert bool(state["scaler"]) == (precision == "fp16")


def test_unknown_mixed_precision_is_refused(tmp_path):
    with pytest.raises(ValueError, match="mixed_precision"):
        dataclasses.replace(builtin_recipes()["tiny"], mixed_precision="fp8")
    path = tmp_path / "recipe.json"  # a recipe file is checked when it is read, before any model is built
    path.write_text(json.dumps({**builtin_recipes()["tiny"].to_dict(), "mixed_precision": "fp8"}))
    with pytest.raises(ValueError, match="mixed_precision"):
        TrainRecipe.load(path)


def _ms_ssim_recipe(weight: float, crop: int = 192) -> TrainRecipe:
    tiny = builtin_recipes()["tiny"]
    return dataclasses.replace(tiny, ms_ssim_weight=weight, stage1=dataclasses.replace(tiny.stage1, crop=crop))


def test_ms_ssim_weight_adds_to_the_distortion_only(data, tmp_path):
    """Same weights and batch: the first step's rate and PSNR are those of the MSE-only recipe, the
    loss is larger by lambda * 255^2 * w * (1 - MS-SSIM) > 0, and MS-SSIM is logged."""
    from sodec_plugin.config import resolve_config

    runs = {}
    for w in (0.0, 0.05):
        t = Trainer(resolve_config("tiny"), _ms_ssim_recipe(w), data, tmp_path / str(w), 1)
        runs[w] = t.run(max_steps=1, progress=False)[0]
    plain, mixed = runs[0.0], runs[0.05]
    assert "ms_ssim" not in plain.values and 0.0 < mixed.values["ms_ssim"] < 1.0
    assert mixed.values["bpp"] == plain.values["bpp"] and mixed.values["psnr"] == plain.values["psnr"]
    assert mixed.loss > plain.loss
    rows = _rows(tmp_path / "0.05", 1)
    assert float(rows[0]["ms_ssim"]) == pytest.approx(mixed.values["ms_ssim"])


def test_ms_ssim_weight_is_checked(data, tmp_path):
    from sodec_plugin.config import resolve_config

    with pytest.raises(ValueError, match="ms_ssim_weight"):
        _ms_ssim_recipe(-0.01)
    with pytest.raises(ValueError, match="at least 161 px"):  # refused before a step, not deep in pytorch_msssim
        Trainer(resolve_config("tiny"), _ms_ssim_recipe(0.01, crop=128), data, tmp_path, 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_gpu_run_exports_the_same_model_as_the_cpu(data, tmp_path):
    """A run trained on a GPU exports (its coding tables are built on the CPU) to the very file that
    exporting its weights on the CPU gives."""
    from safetensors.torch import load_file

    t = train("tiny", str(data), str(tmp_path / "gpu"), stage=1, device="cuda", progress=False)
    assert t.model.compression.entropy_bottleneck.quantiles.is_cuda
    SODECModel.from_folder(tmp_path / "gpu" / "model-stage1").save_pretrained(tmp_path / "cpu")
    a = load_file(tmp_path / "gpu" / "model-stage1" / "model.safetensors")
    b = load_file(tmp_path / "cpu" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_refreshed_tables_replace_the_cached_ones(tiny_fidelity):
    """Training on after an export must not leave the coder on the old tables."""
    m = SODECModel.from_folder(tiny_fidelity)
    comp = m.compression
    old_z, _ = comp.codec.tables()
    with torch.no_grad():
        comp.entropy_bottleneck.quantiles[:, 0, 1] += 3.0  # moves every channel's median
    comp.codec.update_tables()
    new_z, _ = comp.codec.tables()
    assert new_z is not old_z
    assert torch.equal(comp.z_median, torch.round(comp.entropy_bottleneck.quantiles[:, 0, 1].double()).int())


def test_random_downscale_crops_a_large_photo_at_several_scales(tmp_path):
    """A smooth gradient: a crop taken at scale s spans about 1/s as much of it as a crop at full scale."""
    import numpy as np
    from PIL import Image

    from sodec_plugin.train.data import CropDataset

    ramp = np.tile(np.linspace(0, 255, 1024)[None, :, None], (768, 1, 3)).round().astype(np.uint8)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    plain = CropDataset(tmp_path, 64, downscale=1.0)
    scaled = CropDataset(tmp_path, 64, downscale=1.0, random_downscale=0.25)
    spans = [(b[:, 0, :, -1] - b[:, 0, :, 0]).abs().mean().item() for b in
             (scaled.batch(seed=1, step=s, size=8) for s in range(8))]
    full = (plain.batch(seed=1, step=0, size=8)[:, 0, :, -1] - plain.batch(seed=1, step=0, size=8)[:, 0, :, 0])
    assert full.abs().mean().item() == pytest.approx(63 / 1023, abs=0.01)
    assert max(spans) > 2.5 * 63 / 1023 and min(spans) < 2.5 * 63 / 1023  # several scales, up to ~4x
    assert torch.equal(scaled.batch(seed=1, step=3, size=4), scaled.batch(seed=1, step=3, size=4))  # resumable
    b = scaled.batch(seed=2, step=0, size=4)
    assert b.shape == (4, 3, 64, 64) and b.min() >= 0 and b.max() <= 1
    with pytest.raises(ValueError, match="random_downscale"):
        CropDataset(tmp_path, 64, random_downscale=0)


def test_encoder_only_stage1_leaves_what_a_decoder_reads_as_it_was(data, tmp_path, tiny_fidelity):
    """stage1_trains "encoder": E and H_a learn, every tensor a decoder reads (synthesis, entropy models,
    prior, context, gains, tables) is the starting model's, and the run resumes like any other."""
    tiny = builtin_recipes()["tiny"]
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps({**tiny.to_dict(), "stage1_trains": "encoder"}))
    src = SODECModel.from_folder(tiny_fidelity).state_dict()
    renamed = json.loads((tiny_fidelity / "config.json").read_text()) | {"name": "tiny-fidelity-encoder"}
    (tmp_path / "config.json").write_text(json.dumps(renamed))  # a candidate of its own, as a release would be
    cfg = str(tmp_path / "config.json")
    train(cfg, str(data), str(tmp_path / "run"), stage=1, max_steps=2, recipe=str(path), progress=False,
          init_from=str(tiny_fidelity))
    t = train(cfg, str(data), str(tmp_path / "run"), stage=1, recipe=str(path), progress=False,
              init_from=str(tiny_fidelity), resume=True)
    assert t.step == tiny.stage1.steps and len(t.stages.optimizers) == 1
    out = SODECModel.from_folder(tmp_path / "run" / "model").state_dict()
    encoder = ("compression.analysis.", "compression.hyper_analysis.")
    changed = {k for k in src if not torch.equal(src[k], out[k])}
    assert changed and all(k.startswith(encoder) for k in changed)
    assert any(k.startswith("compression.hyper_analysis.") for k in changed)
    with pytest.raises(ValueError, match="stage1_trains"):
        dataclasses.replace(tiny, stage1_trains="decoder")


def test_ssimulacra2_weight_adds_to_the_distortion_only(data, tmp_path):
    """Same first step as the plain recipe in rate and PSNR; the loss grows by lambda * 255^2 * w * MSE ln10/10 *
    (100 - SSIMULACRA2) / 6, the score logged being the eval's SSIMULACRA2 of the same decode."""
    pytest.importorskip("ssimulacra2")
    from sodec_plugin.config import resolve_config

    tiny = builtin_recipes()["tiny"]
    runs = {}
    for w in (0.0, 0.5):
        t = Trainer(resolve_config("tiny"), dataclasses.replace(tiny, ssimulacra2_weight=w), data, tmp_path / str(w), 1)
        runs[w] = t.run(max_steps=1, progress=False)[0]
    plain, mixed = runs[0.0], runs[0.5]
    assert "ssimulacra2" not in plain.values and mixed.values["ssimulacra2"] < 100.0
    assert mixed.values["bpp"] == plain.values["bpp"] and mixed.values["psnr"] == plain.values["psnr"]
    assert mixed.loss > plain.loss
    with pytest.raises(ValueError, match="ssimulacra2_weight"):
        dataclasses.replace(tiny, ssimulacra2_weight=-1.0)


def test_warm_start_keeps_the_gains_exactly_where_the_rate_points_are_the_same():
    """Only the name differs (a candidate started from its parent, as sodec-lite-15 from the bundled model):
    every gain is copied bit for bit, as the interpolation between rate points would not be."""
    from sodec_plugin.hub import bundled_models, default_model_name
    from sodec_plugin.train.warm_start import warm_start

    src = SODECModel.from_folder(bundled_models()[default_model_name()], fuse_lora=False)
    out = warm_start(src, dataclasses.replace(src.cfg, name="sodec-lite-renamed"))
    for key in ("gain", "inverse_gain", "z_gain"):
        assert torch.equal(getattr(out.compression, key), getattr(src.compression, key)), key
