"""Offline before anything imports huggingface_hub: tests never touch the network."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("HF_HUB_CACHE", tempfile.mkdtemp(prefix="sodec-hub-cache-"))

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# The photo the repository holds (Kodak's kodim23, 768x512): every crop a test needs comes from it, so
# the suite runs the same in any clone.
EXAMPLE_PHOTO = REPO / "examples" / "kodim23.png"
# The full Kodak set, beside the repository (docs/data.md), for the tests that need more than one photo's
# worth of pictures; SODEC_KODAK_DIR points elsewhere (or at nothing, to run as a fresh clone does).
KODAK = Path(os.environ.get("SODEC_KODAK_DIR") or REPO.parent / "shared" / "data" / "kodak")


def kodak_crop(index: int = 1, box: tuple[int, int, int, int] = (0, 0, 192, 128)):
    """A real photo crop of `box`'s size from EXAMPLE_PHOTO (Kodak is the test set: evaluate on it,
    never train). The window starts on the red parrot's head (a detailed part of a mostly smooth photo)
    and `index` moves it, so that two indices give two different pictures."""
    from PIL import Image

    left, top, right, bottom = box
    with Image.open(EXAMPLE_PHOTO) as im:
        width, height = im.size
        w, h = right - left, bottom - top
        if not (0 < w <= width and 0 < h <= height):
            raise ValueError(f"a {w}x{h} crop does not fit the {width}x{height} example photo")
        left = (left + 384 + 97 * (index - 1)) % (width - w + 1)
        top = (top + 128 + 61 * (index - 1)) % (height - h + 1)
        return im.convert("RGB").crop((left, top, left + w, top + h))


@pytest.fixture(scope="session")
def hub_cache() -> Path:
    return Path(os.environ["HF_HUB_CACHE"])


@pytest.fixture(scope="session")
def tiny_fidelity(tmp_path_factory) -> Path:
    """A tiny random fidelity-only model folder."""
    from sodec_plugin.testing import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-fidelity"), diffusion=False)


@pytest.fixture(scope="session")
def tiny_full(tmp_path_factory, hub_cache) -> Path:
    """A tiny random model of the full architecture; its base weights live in the Hub cache."""
    from sodec_plugin.testing import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-full"), diffusion=True, hub_cache=hub_cache)
