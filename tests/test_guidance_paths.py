"""The fidelity guidance through the doors that show it: `sodec eval --guidance` (one encode, a curve per
value) and `sodec compare` of such curves, the demo's guidance slider, and ComfyUI's SODECDecode, on a tiny
model whose fidelity decoder reads the guidance (its modulation made random, so that the guidance changes
the picture)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sodec_plugin import codec
from sodec_plugin.config import SODECConfig, builtin_configs
from sodec_plugin.models.sodec import SODECModel
from tests.conftest import kodak_crop

DEFAULT_G = 0.5  # the tiny guided model's default guidance: not 1, so that "the model's default" is seen


@pytest.fixture(scope="module")
def tiny_guided(tmp_path_factory) -> Path:
    """A tiny random fidelity-only model with a guided fidelity decoder, default guidance DEFAULT_G."""
    cfg = dataclasses.replace(builtin_configs()["tiny"], diffusion=None, name="tiny-guided", guidance_channels=8,
                              default_guidance=DEFAULT_G)
    torch.manual_seed(0)
    model = SODECModel(cfg)
    with torch.no_grad():  # as save_tiny_model: large gains so that random latents give non-trivial streams
        model.compression.gain.mul_(30.0)
        model.compression.inverse_gain.div_(30.0)
        head = model.fidelity_decoder.modulation.head  # starts at zero: the guidance would change nothing
        torch.nn.init.normal_(head.weight, std=0.5)
        torch.nn.init.normal_(head.bias, std=0.2)
    return model.save_pretrained(tmp_path_factory.mktemp("tiny-guided"),
                                 metadata={"training": {"note": "tiny random model for tests; decodes noise"}})


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("guidance-images")
    kodak_crop(1, (0, 0, 64, 64)).save(folder / "a.png")
    return folder


def _eval(folder: Path, model: Path, out: Path | None, guidance: list[float] | None = None) -> dict:
    from sodec_plugin.eval.run import run_eval

    return run_eval(folder, model=str(model), qualities=[30, 90], out_dir=out, baselines=("jpeg",), progress=False,
                    metrics=("psnr",), cache=None, guidance=guidance)


# ---- sodec eval and sodec compare ---------------------------------------------------------------------------
def test_eval_encodes_once_and_decodes_a_curve_per_guidance(tiny_guided, images, tmp_path, monkeypatch):
    from sodec_plugin.engine import get_model

    calls = []
    compress = codec.compress
    monkeypatch.setattr(codec, "compress", lambda *a, **k: calls.append(1) or compress(*a, **k))
    ident = get_model(str(tiny_guided)).identity
    result = _eval(images, tiny_guided, tmp_path / "out", [0, 1, 1.0])
    names = [f"{ident} g=0", f"{ident} g=1"]  # one curve per distinct value
    assert result["curves"] == names
    assert result["guidance"] == {names[0]: 0.0, names[1]: 1.0} and result["default_guidance"] == DEFAULT_G
    assert len(calls) == 1 + 2  # the warm-up, then one encode per rate point, whatever the number of curves

    rows = result["rows"]
    own = {(r["codec"], r["point"]): r for r in rows if r["codec"] in names}
    assert len(own) == 4
    for q in (30.0, 90.0):
        a, b = own[names[0], q], own[names[1], q]
        assert a["bytes"] == b["bytes"] and a["bpp"] == b["bpp"]
        assert a["psnr"] != b["psnr"]  # the same file, decoded two ways
    jpeg = [r for r in rows if r["codec"] == "jpeg"]
    assert len(jpeg) == 2  # matched once per rate point, for every curve
    assert sorted(r["target_bpp"] for r in jpeg) == sorted(own[names[0], q]["bpp"] for q in (30.0, 90.0))
    assert {b["codec"] for b in result["bdrate"]} == set(names)

    out = tmp_path / "out"
    saved = json.loads((out / "results.json").read_text())
    assert saved["curves"] == names and saved["guidance"] == result["guidance"]
    md = (out / "summary.md").read_text()
    assert f"{names[0]} at 0; {names[1]} at 1" in md and "the model's default: 0.5" in md
    assert all(f"## BD-rate of {n} against each baseline" in md for n in names)
    assert all(f"## Quality ladder of {n}" in md for n in names)
    summary_codecs = {line.split(",")[0] for line in (out / "summary.csv").read_text().splitlines()[1:]}
    assert summary_codecs == {*names, "jpeg"}


def test_compare_takes_each_guidance_curve(tiny_guided, images, tmp_path, capsys):
    from sodec_plugin.cli import main
    from sodec_plugin.eval.report import compare_results, model_curve

    old = _eval(images, tiny_guided, tmp_path / "old")  # the model's default guidance: one curve
    new = _eval(images, tiny_guided, tmp_path / "new", [0, DEFAULT_G])
    ident = old["codec_name"]
    assert old.get("curves") is None and old["guidance"] == {ident: DEFAULT_G}
    at_default, sharp = f"{ident} g={DEFAULT_G:g}", f"{ident} g=0"
    # The curve at the default guidance is the old curve itself (BD 0); the one at 0 is another picture.
    for row in compare_results(old, new, new_curve=at_default):
        assert row["bd_rate_pct"] == pytest.approx(0.0, abs=1e-9) or math.isnan(row["bd_rate_pct"])
    psnr = next(r for r in compare_results(old, new, new_curve=sharp) if r["metric"] == "psnr")
    assert psnr["bd_quality"] != pytest.approx(0.0, abs=1e-6)
    # As OLD, a several-curve evaluation stands for its model at its default guidance.
    assert model_curve(new) == at_default
    with pytest.raises(ValueError, match="none at its model's default guidance"):
        compare_results({**new, "default_guidance": 0.25}, old)

    capsys.readouterr()
    # `sodec compare` takes each curve of NEW, judging each by the rule (none saves 3%: exit 1).
    assert main(["compare", str(tmp_path / "old"), str(tmp_path / "new")]) == 1
    printed = capsys.readouterr().out
    for curve in (sharp, at_default):
        assert f"{curve} against {ident} on " in printed
        assert f"{curve}: release rule on the high-resolution set alone" in printed
    assert main(["compare", str(tmp_path / "old"), str(tmp_path / "new"), "--curve", sharp]) == 1
    printed = capsys.readouterr().out
    assert sharp in printed and at_default not in printed
    # the guard's curve of NEW is the one at the same guidance
    assert main(["compare", str(tmp_path / "old"), str(tmp_path / "new"), "--guard", str(tmp_path / "old"),
                 str(tmp_path / "new")]) == 1
    printed = capsys.readouterr().out
    assert printed.count(f"{at_default} against {ident}") == 2 and printed.count(f"{sharp} against {ident}") == 2
    assert main(["compare", str(tmp_path / "old"), str(tmp_path / "new"), "--curve", "nope"]) == 2
    assert "has no curve 'nope'" in capsys.readouterr().err


def test_eval_of_a_model_that_ignores_the_guidance(tiny_fidelity, images, capsys):
    from sodec_plugin.cli import build_parser

    assert build_parser().parse_args(["eval", "d"]).guidance is None
    assert build_parser().parse_args(["eval", "d", "--guidance", "0", "0.5"]).guidance == [0.0, 0.5]
    with pytest.raises(ValueError, match="does not read the fidelity guidance.*same curve 2 times"):
        _eval(images, tiny_fidelity, None, [0, 1])
    with pytest.raises(ValueError, match="guidance must be a finite number"):
        _eval(images, tiny_fidelity, None, [-1])
    # No values, or one: the evaluation reads as it always did (one curve named by the model, nothing recorded).
    for guidance in (None, [0.3]):
        result = _eval(images, tiny_fidelity, None, guidance)
        assert not {"curves", "guidance", "default_guidance"} & set(result)
        assert {r["codec"] for r in result["rows"]} == {result["codec_name"], "jpeg"}
    assert "changes nothing" in capsys.readouterr().err


# ---- the demo -----------------------------------------------------------------------------------------------
def test_demo_guidance_slider_follows_the_model(tiny_guided, tiny_fidelity, tiny_full):
    from sodec_plugin.demo.app import Page

    page = Page()
    try:
        path_, guidance, note = page.model_controls(str(tiny_guided))
        assert path_["visible"] is False and guidance["visible"] is True
        assert (guidance["minimum"], guidance["maximum"], guidance["value"]) == (0.0, 1.0, DEFAULT_G)
        assert "best-looking" in guidance["info"] and "closest to the original" in guidance["info"]
        assert "guided" in note
        _, guidance, _ = page.model_controls(str(tiny_full))
        assert guidance["visible"] is True and guidance["maximum"] > 1 and "as trained" in guidance["info"]
        _, guidance, _ = page.model_controls(str(tiny_fidelity))
        assert guidance["visible"] is False
    finally:
        page.close()


def test_demo_decodes_at_the_guidance_asked_for(tiny_guided, images):
    from sodec_plugin.demo.comparison import Comparer, open_upload

    upload = open_upload(images / "a.png")
    comparer = Comparer()
    runs = {g: comparer.run(upload, model=str(tiny_guided), quality=60, codecs=["jpeg"], perceptual=False,
                            guidance=g) for g in (0.0, 1.0, None)}
    pixels = {g: np.asarray(r.decoded) for g, r in runs.items()}
    assert runs[0.0].sdc == runs[1.0].sdc and not np.array_equal(pixels[0.0], pixels[1.0])
    expected = np.asarray(codec.decompress(runs[None].sdc, model=str(tiny_guided), guidance=DEFAULT_G))
    np.testing.assert_array_equal(pixels[None], expected)
    assert [r.rows[0][1] for r in runs.values()] == ["quality 60, guidance 0.00", "quality 60, guidance 1.00",
                                                     "quality 60, guidance 0.50"]


# ---- ComfyUI ------------------------------------------------------------------------------------------------
def test_comfyui_decode_reads_a_guided_fidelity_decoder(tiny_guided, tiny_fidelity):
    from comfyui_nodes import coding, model_loading

    handle = model_loading.load_model_handle(str(tiny_guided), device="cpu")
    assert "reads the guidance" in handle.describe()
    image = torch.from_numpy(np.asarray(kodak_crop(2, (0, 0, 64, 48)), dtype=np.float32) / 255.0)[None]
    bits = coding.encode_images(handle, image)
    out, notes = {}, {}
    for g in (0.0, 1.0, 2.0):
        out[g], _, text = coding.decode_bitstream(handle, bits, guidance=g)
        notes[g] = text[-1]
    assert not torch.equal(out[0.0], out[1.0]) and torch.equal(out[1.0], out[2.0])  # clamped to its MSE end
    assert notes[0.0] == "guidance 0.00 (fidelity decoder: 0 best-looking, 1 closest to the original)"
    assert notes[2.0].startswith("guidance 2.00 (read as 1) (fidelity decoder")
    plain = model_loading.load_model_handle(str(tiny_fidelity), device="cpu")
    assert "reads the guidance" not in plain.describe()
    assert coding.guidance_note(plain.model, "fidelity", 0.4) == (
        "guidance 0.40 not used: the fidelity decoder does not read it")


def test_comfyui_default_guidance_is_the_bundled_models(tiny_guided):
    from comfyui_nodes import coding
    from sodec_plugin.hub import DEFAULT_MODEL, bundled_models

    assert coding.model_default_guidance(tiny_guided) == DEFAULT_G
    bundled = bundled_models()[DEFAULT_MODEL]
    assert coding.DEFAULT_GUIDANCE == SODECConfig.load(bundled)[0].default_guidance
    assert coding.model_default_guidance() == coding.DEFAULT_GUIDANCE
