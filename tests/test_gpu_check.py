"""benchmarks/gpu_check.py on the CPU with the tiny networks: every section runs and reports numbers."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("codec", "cross-device", "diffusion decode", "training")


def test_gpu_check_runs_on_cpu_with_tiny_networks(tmp_path):
    out = tmp_path / "check.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--arch",
                           "tiny", "--json", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| section | setting | time ms (median) | peak memory MB")
    assert "torch " in proc.stdout and "GPU: none (CPU run" in proc.stdout

    def number(cell: str) -> float | None:
        try:
            return float(cell)
        except ValueError:
            return None

    by_section: dict[str, list[list[str]]] = {}
    for line in table[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        by_section.setdefault(cells[0], []).append(cells)
    for sec in SECTIONS:
        timed = [r for r in by_section.get(sec, []) if number(r[2]) is not None]
        assert timed, f"no timed row in section {sec!r}: {by_section.get(sec)}"
        assert all(number(r[2]) > 0 for r in timed)
    assert not any("ERROR" in line or "FAIL" in line for line in table)

    res = json.loads(out.read_text())
    rows = res["rows"]
    assert {r["status"] for r in rows} <= {"ok", "skipped"}
    assert [r for r in rows if r["status"] == "skipped"] == [r for r in rows if "CUDA only" in r["result"]]
    codec_rows = [r["setting"] for r in rows if r["section"] == "codec"]
    for dt in ("fp32", "bf16"):
        for what in ("encode", "decode"):
            assert sum(s.startswith(what) and f" {dt} " in s for s in codec_rows) == 2, codec_rows  # Kodak + photo
    train = [r for r in rows if r["section"] == "train"]
    for stage in (2, 3):
        for batch in (1, 4):
            assert any(f"stage {stage} step" in r["setting"] and f"batch {batch}," in r["setting"]
                       and math.isfinite(r["ms"]) for r in train), (stage, batch)
    # The symbol check: every pair equal, and the report says which devices (and dtypes) were compared.
    cross = res["cross_device"]
    assert cross and all(r["symbols_equal"] for r in cross)
    assert all(r["encode_device"] and r["decode_device"] for r in cross)
    assert set(res["cross_device_compared"]) >= {"cpu fp32 -> cpu fp32", "cpu bf16 -> cpu fp32",
                                                 "cpu fp32 -> cpu bf16"}
    assert all(r["y_symbols"] > 0 and r["y_symbols_differing"] == 0 for r in cross)
    assert res["device"] == "cpu" and res["gpu"] is None and res["torch"]
