"""Files outlive upgrades: each release's golden .sdc decodes to its recorded pixels.

The package ships the default model only; earlier releases come from their Hub home
(sodec_plugin/releases.py). The weights that the golden files of earlier releases need are kept in
tests/weights/ and placed in a Hub-layout cache here, so that decoding runs the real resolution
code (huggingface_hub, offline, the table's repo id and revision, the digest check).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
from PIL import Image

import sodec_plugin as sp
from sodec_plugin import engine, hub, releases
from sodec_plugin.config import SODECConfig
from sodec_plugin.testing import place_in_hub_cache

TESTS = Path(__file__).resolve().parent
GOLDEN = TESTS / "golden"
GOLDEN_FILES = sorted(GOLDEN.glob("*.sdc"))
# Archived releases whose weights the tests keep: sodec-lite (the first format: 8 rate points, no
# context model) and sodec-lite-10 (checkerboard context and latent blocks without the hyper gain).
ARCHIVED = TESTS / "weights"

# What each release's decoder runs, recorded from its config.json. Releases whose weights are at
# hand (bundled or in tests/weights) are checked against their configs; every path must be run by
# at least one golden file that the tests decode.
DECODER_PATHS: dict[str, frozenset[str]] = {
    "sodec-lite": frozenset({"no context"}),
    "sodec-lite-2": frozenset({"no context"}),
    "sodec-lite-3": frozenset({"no context"}),
    "sodec-lite-4": frozenset({"no context"}),
    "sodec-lite-5": frozenset({"checkerboard"}),
    "sodec-lite-6": frozenset({"checkerboard"}),
    "sodec-lite-7": frozenset({"checkerboard"}),
    "sodec-lite-8": frozenset({"checkerboard"}),
    "sodec-lite-9": frozenset({"checkerboard", "latent blocks"}),
    "sodec-lite-10": frozenset({"checkerboard", "latent blocks"}),
    "sodec-lite-11": frozenset({"checkerboard", "latent blocks", "1/8 blocks", "hyper gain"}),
    "sodec-lite-12": frozenset({"checkerboard", "latent blocks", "1/8 blocks", "hyper gain"}),
}


def decoder_paths(cfg: SODECConfig) -> frozenset[str]:
    paths = {"checkerboard" if cfg.context_model == "checkerboard" else "no context"}
    if cfg.analysis_blocks or cfg.synthesis_blocks:
        paths.add("latent blocks")
    if cfg.synthesis_blocks_1_8:
        paths.add("1/8 blocks")
    if cfg.hyper_gain:
        paths.add("hyper gain")
    return frozenset(paths)


def local_weights() -> dict[str, Path]:
    """Release name -> folder for every release whose weights the tests have."""
    found = dict(hub.bundled_models())
    found.update({p.name: p for p in sorted(ARCHIVED.iterdir()) if (p / "config.json").is_file()})
    return found


@pytest.fixture(scope="module")
def archived_in_hub_cache(hub_cache: Path) -> dict[str, Path]:
    """tests/weights placed where huggingface_hub puts a download of each release's repo and tag."""
    snaps = {}
    for name, folder in local_weights().items():
        if folder.parent == ARCHIVED:
            r = releases.BY_NAME[name]
            snaps[name] = place_in_hub_cache(folder, r.repo_id, hub_cache, revision=r.revision)
    return snaps


def test_the_package_ships_the_default_alone_and_it_is_a_release():
    assert set(hub.bundled_models()) == {releases.DEFAULT_MODEL}
    for name, folder in local_weights().items():
        digest = json.loads((folder / "config.json").read_text())["weights_sha256"]
        assert releases.BY_NAME[name].digest == digest, f"{folder} is not the release {name}"


def test_every_release_has_a_golden_file_and_recorded_decoder_paths():
    assert [p.stem for p in GOLDEN_FILES] == sorted(r.identity for r in releases.RELEASES)
    assert set(DECODER_PATHS) == set(releases.BY_NAME), "record the new release's decoder paths"
    for name, folder in local_weights().items():
        cfg = SODECConfig.from_dict(json.loads((folder / "config.json").read_text()))
        assert decoder_paths(cfg) == DECODER_PATHS[name], name


def test_golden_files_cover_every_decoder_path_of_every_release():
    covered = frozenset().union(*(DECODER_PATHS[name] for name in local_weights()))
    for name, paths in DECODER_PATHS.items():
        assert paths <= covered, f"{name} runs {sorted(paths - covered)}, which no decoded golden file covers: " \
                                 "keep its weights in tests/weights"


def test_every_local_model_card_loads_it_by_its_name():
    # A card exported outside the package and copied in would name a path of the release machine.
    for name, folder in local_weights().items():
        assert f'load_model("{name}")' in (folder / "README.md").read_text(), f"{name}'s README.md must load it by name"


DECODABLE = [p for p in GOLDEN_FILES if p.stem.split("@")[0] in local_weights()]


@pytest.mark.parametrize("path", DECODABLE, ids=[p.stem for p in DECODABLE])
def test_golden_file_decodes_to_its_pixels(path, archived_in_hub_cache):
    header = sp.read_header(path.read_bytes())
    assert header["model_id"] in hub.known_model_ids(), "a released model must stay decodable"
    assert header["model_name"] == path.stem.split("@")[0]  # named from the release table, not the file
    out = np.asarray(sp.decompress(path.read_bytes())).astype(int)  # the file names its model
    with Image.open(path.with_suffix(".png")) as ref:
        expected = np.asarray(ref).astype(int)
    assert out.shape == expected.shape
    assert np.abs(out - expected).max() <= 2  # float rounding across machines, nothing more


def test_an_archived_release_is_read_from_its_hub_repo_and_tag(archived_in_hub_cache):
    r = releases.BY_NAME["sodec-lite-10"]
    folder = hub.resolve_folder("sodec-lite-10")
    assert folder == archived_in_hub_cache["sodec-lite-10"]
    assert f"models--{r.repo_id.replace('/', '--')}" in str(folder)
    assert hub.resolve_folder(r.identity) == folder
    assert sp.load_model("sodec-lite-10").digest == r.digest


def test_a_file_of_an_archived_release_offline_and_not_cached_names_what_to_fetch(monkeypatch, tmp_path):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    engine.clear()
    data = (GOLDEN / "sodec-lite-10@147ea094.sdc").read_bytes()
    message = "sodec-lite-10@147ea094 .* sodec-project/sodec-lite-10 .*release-147ea094.* sodec download sodec-lite-10"
    with pytest.raises(hub.ModelNotFoundError, match=message):
        sp.decompress(data)
    import pillow_codec  # noqa: F401  (Pillow: an OSError with the same words, no traceback of ours)

    with Image.open(GOLDEN / "sodec-lite-10@147ea094.sdc") as im:
        assert im.info["model"] == "sodec-lite-10"
        with pytest.raises(OSError, match="sodec download sodec-lite-10"):
            im.load()


@pytest.mark.parametrize("path", [p for p in GOLDEN_FILES if p not in DECODABLE],
                         ids=[p.stem for p in GOLDEN_FILES if p not in DECODABLE])
def test_golden_files_without_local_weights_ask_for_their_release(path):
    name = path.stem.split("@")[0]
    r = releases.BY_NAME[name]
    with pytest.raises(hub.ModelNotFoundError, match=re.escape(r.repo_id) + ".*" + re.escape(f"sodec download {name}")):
        sp.decompress(path.read_bytes())


def test_weights_of_a_release_that_are_not_the_release_are_refused(archived_in_hub_cache, tmp_path, hub_cache):
    # Someone re-tags the repo at other weights: decoding refuses rather than decoding wrongly.
    r = releases.BY_NAME["sodec-lite-9"]
    other = tmp_path / "other"
    other.mkdir()
    for f in ("config.json", "model.safetensors", "README.md"):
        (other / f).write_bytes((ARCHIVED / "sodec-lite" / f).read_bytes())
    place_in_hub_cache(other, r.repo_id, hub_cache, revision=r.revision)
    try:
        with pytest.raises(hub.ModelNotFoundError, match="refusing"):
            hub.resolve_folder("sodec-lite-9")
    finally:
        (hub_cache / f"models--{r.repo_id.replace('/', '--')}" / "refs" / r.revision).unlink()


def test_the_default_re_encodes_its_golden_file_byte_for_byte(monkeypatch):
    """The encoder's bands (one band for this crop by default, three when forced) change no byte."""
    from sodec_plugin.models import compression
    from tests.make_golden import BOX, QUALITY, SOURCE

    r = releases.BY_NAME[releases.DEFAULT_MODEL]
    golden = (GOLDEN / f"{r.identity}.sdc").read_bytes()
    with Image.open(SOURCE) as im:
        crop = im.convert("RGB").crop(BOX)
    assert sp.compress(crop, model=r.name, quality=QUALITY) == golden
    monkeypatch.setattr(compression, "ENCODE_BAND_PIXELS", 1)  # the smallest bands: 8 rows of the 1/8 grid
    assert crop.height // 64 > 1
    assert sp.compress(crop, model=r.name, quality=QUALITY) == golden


def test_the_default_quality_ladder_is_monotone_on_real_photos():
    """More quality never gives less: PSNR and MS-SSIM do not fall as the quality rises (the evaluation
    reports any violation on whole test sets; this holds it on a few real photo crops)."""
    from sodec_plugin.metrics import ms_ssim, psnr
    from tests.conftest import kodak_crop

    crops = [kodak_crop(i, box) for i, box in ((1, (256, 128, 512, 384)), (13, (0, 0, 256, 256)),
                                                (23, (300, 100, 556, 356)))]
    for index, crop in enumerate(crops):
        ref = np.asarray(crop)
        scores = []
        for q in (1, 25, 50, 75, 100):
            out = np.asarray(sp.decompress(sp.compress(crop, model=releases.DEFAULT_MODEL, quality=q)))
            scores.append((q, psnr(ref, out), ms_ssim(ref, out)))
        for (q0, p0, m0), (q1, p1, m1) in zip(scores, scores[1:], strict=False):
            assert p1 >= p0 and m1 >= m0, f"crop {index}: quality {q1} gave {p1:.2f} dB / {m1:.4f}, quality {q0} " \
                                          f"{p0:.2f} / {m0:.4f}"


def test_each_shipped_config_is_its_release_entry():
    """A release's config.json is the built-in config of its name (the one entry sodec train uses), so
    the two cannot drift."""
    from sodec_plugin.config import builtin_configs

    for name, folder in local_weights().items():
        assert SODECConfig.from_dict(json.loads((folder / "config.json").read_text())) == builtin_configs()[name], name


def test_each_shipped_model_card_is_derived_from_its_entry(tmp_path):
    """A shipped README.md is what write_model_card makes from the release entry and the weights'
    own training metadata: the note, the digest and the provenance cannot drift from the table."""
    from safetensors import safe_open

    from sodec_plugin.model_card import write_model_card
    from sodec_plugin.models.sodec import SODECModel

    for name, folder in local_weights().items():
        with safe_open(str(folder / "model.safetensors"), "pt") as f:
            training = json.loads(f.metadata()["training"])
        out = tmp_path / name
        out.mkdir()
        write_model_card(out, SODECModel.from_folder(folder), training)
        card = (folder / "README.md").read_text()
        assert card == (out / "README.md").read_text(), f"{name}: run write_model_card on it (see releases.py)"
        assert releases.BY_NAME[name].note in card


def test_docs_list_the_models_from_their_entries():
    """docs/models.md's lists of models are generated from the notes (python -m sodec_plugin.releases)."""
    page = (Path(__file__).resolve().parents[1] / releases.LIST_PAGE).read_text()
    assert releases.with_release_lists(page) == page, "run: python -m sodec_plugin.releases"
    for key, entries in releases.LISTS.items():
        begin, end = releases.list_markers(key)
        listed = re.findall(r"^- `(sodec-lite[-0-9]*)`", page.split(begin)[1].split(end)[0], re.M)
        assert listed == [r.name for r in reversed(entries)], key


def test_every_entry_is_complete_and_candidates_have_no_hub_home():
    for r in releases.RELEASES:
        assert r.note and re.fullmatch(r"[0-9a-f]{64}", r.digest or ""), r.name
        assert r.parent is None or releases.BY_NAME[r.parent].released, r.name
    for c in releases.CANDIDATES:
        assert c.name not in releases.BY_NAME and not c.released
        with pytest.raises(ValueError, match="candidate"):
            c.repo_id and c.revision  # noqa: B018
