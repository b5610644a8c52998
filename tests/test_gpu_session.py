"""benchmarks/gpu_session.py's device half on the CPU with the tiny networks: the check runs, the
training stops in time, and $OUT holds a model folder that the codec loads, within the 8 files that
come back from a device call."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from sodec_plugin import compress, decompress, load_model

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_session_checks_trains_and_returns_a_model(tmp_path, tiny_fidelity):
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        small = rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)
        Image.fromarray(small).resize((96, 80), Image.Resampling.BICUBIC).save(data / f"p{i}.jpg", quality=95)
    out, no_wheels = tmp_path / "out", tmp_path / "no-wheels"
    no_wheels.mkdir()
    env = {**os.environ, "OUT": str(out), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_session.py"), "run", "--device", "cpu",
         "--config", str(tiny_fidelity), "--init-from", str(tiny_fidelity), "--recipe", "tiny", "--data", str(data),
         "--check-args", "--arch tiny --sections diffusion", "--check-s", "120",
         "--total-s", "600", "--run-dir", str(tmp_path / "run"), "--wheels", str(no_wheels)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["gpu-check.json", "gpu-check.log", "model.safetensors", "config.json", "README.md",
                            "log-stage1.csv", "session.log"])
    assert "| section | setting |" in (out / "gpu-check.log").read_text()  # the check's table came back
    log = (out / "session.log").read_text()
    assert "--max-minutes" in log and "trained to: 1,4," in log  # stage 1, its last logged step
    model = load_model(str(out), device="cpu")
    img = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    back = decompress(compress(img, model=model, quality=50), model=model)
    assert back.size == img.size
