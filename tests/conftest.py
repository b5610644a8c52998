"""Offline before anything imports huggingface_hub: tests never touch the network."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("HF_HUB_CACHE", tempfile.mkdtemp(prefix="sodec-hub-cache-"))

import pytest  # noqa: E402

KODAK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kodak"


def kodak_crop(index: int = 1, box: tuple[int, int, int, int] = (0, 0, 192, 128)):
    """A real photo crop (the Kodak set is the test set: evaluate on it, never train)."""
    from PIL import Image

    path = KODAK / f"kodim{index:02d}.png"
    if not path.exists():
        pytest.skip(f"Kodak images not found at {KODAK}")
    with Image.open(path) as im:
        return im.convert("RGB").crop(box)


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
