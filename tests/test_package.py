"""The wheel users install: small enough for PyPI and every install, with the default model alone."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

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


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel pip builds from a clean checkout's files."""
    tmp_path = tmp_path_factory.mktemp("wheel")
    src = checkout_copy(tmp_path / "src")
    out = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(out), str(src)], check=True, cwd=tmp_path)
    wheels = list(out.glob("sodec-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


def test_the_wheel_is_small_and_holds_the_default_model_alone(wheel):
    size = wheel.stat().st_size
    assert size <= MAX_WHEEL_BYTES, f"the wheel is {size / 2**20:.1f} MB (at most {MAX_WHEEL_BYTES / 2**20:.0f} MB)"
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    models = sorted(n.split("/")[2] for n in names if n.startswith("sodec_plugin/weights/")
                    and n.endswith("/model.safetensors"))
    assert models == [DEFAULT_MODEL]
    assert f"sodec_plugin/weights/{DEFAULT_MODEL}/config.json" in names
    assert not any(n.startswith("tests/") for n in names)


# What a package must not carry: one machine's absolute paths (data and work folders of one computer),
# and work-log text (numbered sessions, words about machines being lent). The repository's docs/ hold
# the project's record; the installed code and data hold what the code needs.
MACHINE_PATH = re.compile(r"(?<![\w.~-])(?:/(?:work|home|root|tmp|mnt|Users|data)/|[A-Za-z]:\\Users\\)")
WORK_LOG = re.compile(r"\bsessions? \d+|\blent\b", re.IGNORECASE)


def installed_texts(wheel: Path) -> dict[str, str]:
    """Every installed file as text: source and data files whole, a .safetensors file's header (its
    metadata: config and training provenance), the rest of which is tensors."""
    texts = {}
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if ".dist-info/" in name:
                continue
            data = z.read(name)
            if name.endswith(".safetensors"):
                data = data[8:8 + int.from_bytes(data[:8], "little")]
            texts[name] = data.decode("utf-8")
    return texts


def test_the_installed_files_hold_no_machine_paths_and_no_work_log(wheel):
    texts = installed_texts(wheel)
    assert "sodec_plugin/train/rejected_by_eye.tsv" in texts  # package data is scanned too
    found = [f"{name}: {m.group(0)!r} in ...{text[max(0, m.start() - 40):m.end() + 40]!r}..."
             for name, text in sorted(texts.items()) for pattern in (MACHINE_PATH, WORK_LOG)
             for m in pattern.finditer(text)]
    assert not found, "\n".join(found)


def test_the_patterns_catch_what_they_are_for():
    assert MACHINE_PATH.search('data="/work/data/mix"') and MACHINE_PATH.search("cp /home/me/x .")
    assert MACHINE_PATH.search(r"C:\Users\me\photos") and WORK_LOG.search("Session 18, the same recipe")
    assert WORK_LOG.search("no GPU has been lent since")
    assert not MACHINE_PATH.search("../shared/data/train runs/gpu-data https://example.org/data/x")
    assert not WORK_LOG.search("a lenient parser, sessions of the server, Python 3.12")
