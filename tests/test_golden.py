"""Files outlive upgrades: each released model's golden .sdc decodes to its recorded pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sodec_plugin as sp
from sodec_plugin import hub

GOLDEN = Path(__file__).resolve().parent / "golden"
GOLDEN_FILES = sorted(GOLDEN.glob("*.sdc"))


def test_every_bundled_model_has_a_golden_file():
    for name in hub.bundled_models():
        digest = sp.load_model(name).digest
        assert (GOLDEN / f"{name}@{digest[:8]}.sdc").exists(), f"run: python tests/make_golden.py {name}"


def test_every_bundled_model_card_loads_it_by_its_name():
    # A card exported outside the package and copied in would name a path of the release machine.
    for name in hub.bundled_models():
        card = (hub.WEIGHTS_DIR / name / "README.md").read_text()
        assert f'load_model("{name}")' in card, f"{name}'s README.md must load it by name"


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=[p.stem for p in GOLDEN_FILES])
def test_golden_file_decodes_to_its_pixels(path):
    header = sp.read_header(path.read_bytes())
    assert header["model_id"] in hub.known_model_ids(), "a released model must stay decodable"
    assert header["model_name"] == path.stem.split("@")[0]  # named from the bundled configs, not the file
    out = np.asarray(sp.decompress(path.read_bytes())).astype(int)  # the file names its model
    with Image.open(path.with_suffix(".png")) as ref:
        expected = np.asarray(ref).astype(int)
    assert out.shape == expected.shape
    assert np.abs(out - expected).max() <= 2  # float rounding across machines, nothing more
