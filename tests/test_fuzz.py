"""Bounded fuzzing of the full decode path (tests/fuzz_sdc.py runs the long version)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sodec_plugin as sp
from tests.fuzz_sdc import EXPECTED, fuzz, seed_files, with_crc


@pytest.fixture(scope="module")
def seeds(tiny_fidelity) -> list[bytes]:
    return seed_files(str(tiny_fidelity))


def test_mutated_files_only_raise_clean_errors(tiny_fidelity, seeds):
    counts = fuzz(str(tiny_fidelity), seeds, cases=300, seed=1)
    assert counts["failures"] == 0 and counts["rejected"] > 0 and counts["cases"] == 300


@settings(max_examples=150, deadline=None)
@given(body=st.binary(max_size=200), prefix=st.sampled_from([b"", b"SDC\x01"]))
def test_arbitrary_bytes_with_valid_checksums(tiny_fidelity, body, prefix):
    try:
        sp.decompress(with_crc(prefix + body), model=str(tiny_fidelity))
    except EXPECTED:
        pass
