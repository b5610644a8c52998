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
