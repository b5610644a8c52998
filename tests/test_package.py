"""The wheel users install: small enough for PyPI and every install, with the default model alone."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from sodec_plugin.releases import DEFAULT_MODEL

REPO = Path(__file__).resolve().parents[1]
MAX_WHEEL_BYTES = 25 * 1024 * 1024  # PyPI refuses files over 100 MB; a Pillow plugin should be far smaller


def checkout_copy(dest: Path) -> Path:
    """The files a clean checkout has (tracked, and new files git would add): setuptools keeps stale
    files in build/, so an in-place build could hide or invent a model."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file() and not rel.startswith("tests/"):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def test_the_wheel_is_small_and_holds_the_default_model_alone(tmp_path):
    src = checkout_copy(tmp_path / "src")
    out = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(out), str(src)], check=True, cwd=tmp_path)
    wheels = list(out.glob("sodec-*.whl"))
    assert len(wheels) == 1
    size = wheels[0].stat().st_size
    assert size <= MAX_WHEEL_BYTES, f"the wheel is {size / 2**20:.1f} MB (at most {MAX_WHEEL_BYTES / 2**20:.0f} MB)"
    with zipfile.ZipFile(wheels[0]) as z:
        names = z.namelist()
    models = sorted(n.split("/")[2] for n in names if n.startswith("sodec_plugin/weights/")
                    and n.endswith("/model.safetensors"))
    assert models == [DEFAULT_MODEL]
    assert f"sodec_plugin/weights/{DEFAULT_MODEL}/config.json" in names
    assert not any(n.startswith("tests/") for n in names)
