"""The rANS boundary: exact round trips, and no input can make the decoder read past its buffer."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sodec_plugin import entropy
from sodec_plugin.entropy import CodingTable, EntropyError


@pytest.fixture(scope="module")
def table() -> CodingTable:
    scales = np.exp(np.linspace(np.log(0.11), np.log(16.0), 12))
    return CodingTable.from_pmfs(*entropy.gaussian_pmfs(scales, 1e-9))


def test_round_trip_and_clamping(table):
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 12, 5000).astype(np.int32)
    sym = np.round(rng.normal(0, 1, 5000) * (idx + 1)).astype(np.int32)
    sym[:3] = [10_000, -10_000, 0]  # far outside any table: clamped, never bypass-coded
    data = entropy.encode(sym, idx, table)
    out = entropy.decode(data, idx, table)
    assert np.array_equal(out, table.clamp(sym, idx))
    assert out[0] == table.offset[idx[0]] + table.length[idx[0]] - 3


def test_chunked_decode_equals_one_call(table, monkeypatch):
    from compressai.ans import RansDecoder

    rng = np.random.default_rng(1)
    idx = rng.integers(0, 12, 3001).astype(np.int32)
    sym = np.round(rng.normal(0, 1, 3001) * (idx + 1)).astype(np.int32)
    data = entropy.encode(sym, idx, table)
    monkeypatch.setattr(entropy, "DECODE_CHUNK", 7)  # many chunks, the last one partial
    chunked = entropy.decode(data, idx, table)
    padded = data + bytes(4 * (2 + idx.size) + 8 - len(data))
    whole = RansDecoder().decode_with_indexes(padded, idx.tolist(), *table.lists)
    assert np.array_equal(chunked, np.asarray(whole)) and np.array_equal(chunked, table.clamp(sym, idx))


def test_tables_have_no_reachable_overflow_slot(table):
    n = np.arange(table.cdf.shape[0])
    assert (table.cdf[n, table.length - 1] == table.cdf[n, table.length - 2]).all()


def test_malformed_tables_are_refused(table):
    cdf = table.cdf.copy()
    cdf[0, table.length[0] - 2] -= 1  # overflow slot would have width 1: bypass reachable
    with pytest.raises(EntropyError):
        CodingTable(cdf, table.length, table.offset)


@pytest.mark.parametrize("data", [b"", b"\x00", b"\xff" * 4, b"\xff" * 64, bytes(range(256))])
def test_short_and_hostile_streams_decode_to_bounded_values(table, data):
    idx = np.arange(4000, dtype=np.int32) % 12
    out = entropy.decode(data, idx, table)
    assert out.shape == idx.shape
    lo, hi = table.offset[idx], table.offset[idx] + table.length[idx] - 3
    assert ((out >= lo) & (out <= hi)).all()


def test_overlong_stream_and_bad_indexes_are_errors(table):
    with pytest.raises(EntropyError):
        entropy.decode(bytes(1000), np.zeros(3, np.int32), table)
    with pytest.raises(EntropyError):
        entropy.decode(b"", np.array([12], np.int32), table)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600), n=st.integers(0, 400), row=st.integers(0, 11))
def test_fuzz_decoder_never_reads_past_the_buffer(table, data, n, row):
    idx = np.full(n, row, dtype=np.int32)
    if len(data) > 4 * (2 + n) + 8:
        with pytest.raises(EntropyError):
            entropy.decode(data, idx, table)
        return
    out = entropy.decode(data, idx, table)
    assert out.shape == (n,)


# ---- compressai's rANS module without compressai's package import ----------------------------------
def _fresh_process(script: str) -> dict:
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", script], cwd=repo, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(repo)})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


ROUND_TRIP = """
import json, sys
import numpy as np
from PIL import Image
import sodec_plugin as sp
from sodec_plugin import entropy
image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 70, 3), dtype=np.uint8))
decoded = sp.decompress(sp.compress(image, quality=50)).size == image.size
cdf = [[0, 20000, 65536, 65536], [0, 1, 65535, 65536, 65536]]
table = entropy.CodingTable(np.array([r + [0] * (5 - len(r)) for r in cdf], np.int32), np.array([4, 5], np.int32),
                            np.array([0, -1], np.int32))
idx = (np.arange(1000) % 2).astype(np.int32)
sym = (np.arange(1000) % 3 - 1).astype(np.int32) * idx
ours_ok = decoded and bool(np.array_equal(entropy.decode(entropy.encode(sym, idx, table), idx, table),
                                          table.clamp(sym, idx)))
"""

COMPRESSAI_WORKS = """
import compressai, compressai.ans, torch
from compressai.entropy_models import EntropyBottleneck
eb = EntropyBottleneck(4)
eb.update(force=True)
x = torch.round(torch.randn(1, 4, 6, 6) * 3)
strings = eb.compress(x)
theirs_ok = bool(torch.equal(eb.decompress(strings, (6, 6)), x))
"""


def test_coding_leaves_compressai_out_of_sys_modules_and_a_later_import_of_it_works() -> None:
    """A process that codes (an encode and a decode with the bundled model, and the coder alone)
    never runs compressai's package import (seconds: its datasets import torch_geometric); the user's
    own `import compressai` afterwards gets the real package, whose coder works (initialising the
    rANS extension twice would fail)."""
    r = _fresh_process(ROUND_TRIP + """
before = sorted(m for m in sys.modules if m.startswith(("compressai", "torch_geometric")))
""" + COMPRESSAI_WORKS + """
print(json.dumps({"ours_ok": ours_ok, "before": before, "theirs_ok": theirs_ok,
                  "real": compressai.ans.__name__, "same_classes": compressai.ans.RansEncoder is
                  entropy.rans().RansEncoder}))
""")
    assert r == {"ours_ok": True, "before": [], "theirs_ok": True, "real": "compressai.ans", "same_classes": True}


def test_coding_after_the_users_own_import_of_compressai_uses_its_module() -> None:
    r = _fresh_process(COMPRESSAI_WORKS + ROUND_TRIP + """
print(json.dumps({"ours_ok": ours_ok, "theirs_ok": theirs_ok, "shared": entropy.rans() is compressai.ans}))
""")
    assert r == {"ours_ok": True, "theirs_ok": True, "shared": True}
