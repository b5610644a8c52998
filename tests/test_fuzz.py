"""Bounded fuzzing of the full decode path (tests/fuzz_sdc.py runs the long version)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sodec_plugin as sp
from sodec_plugin import container
from tests.fuzz_sdc import EXPECTED, fuzz, seed_files, with_crc


@pytest.fixture(scope="module")
def seeds(tiny_fidelity) -> list[bytes]:
    return seed_files(str(tiny_fidelity))


def test_mutated_files_only_raise_clean_errors(tiny_fidelity, seeds):
    counts = fuzz(str(tiny_fidelity), seeds, cases=300, seed=1)
    assert counts["failures"] == 0 and counts["rejected"] > 0 and counts["cases"] == 300


@pytest.fixture(scope="module")
def header(tiny_fidelity, seeds) -> tuple[bytes, container.SDCFile]:
    """A real file's header (everything before the z stream's length), and the file it came from."""
    f = container.parse(seeds[0])
    packed = container.pack(container.SDCFile(f.width, f.height, f.mode, f.model_id, f.rate_position, b"", b"", {}))
    return packed[:-5], f  # less the empty z length (one byte) and the CRC


def decode_random_streams(model: str, header: bytes, f: container.SDCFile, z: bytes, y: bytes) -> bool:
    """True when random streams behind a real header decoded (to the header's size and mode), False when
    they were refused with a clean error; anything else fails the test."""
    try:
        im = sp.decompress(with_crc(header + container._varint(len(z)) + z + y), model=model)
    except EXPECTED:
        return False
    assert (im.size, im.mode) == ((f.width, f.height), f.mode)
    return True


@settings(max_examples=150, deadline=None)
@given(z=st.binary(max_size=64), y=st.binary(max_size=400))
def test_random_streams_decode_to_the_header_size_or_fail_cleanly(tiny_fidelity, header, z, y):
    decode_random_streams(str(tiny_fidelity), *header, z, y)


def test_random_streams_reach_the_entropy_decoder(tiny_fidelity, header):
    """The property above must not pass by refusing everything: some random streams decode."""
    rng = random.Random(3)
    outcomes = [decode_random_streams(str(tiny_fidelity), *header, rng.randbytes(rng.randrange(64)),
                                      rng.randbytes(rng.randrange(400))) for _ in range(40)]
    assert any(outcomes) and not all(outcomes)


@settings(max_examples=150, deadline=None)
@given(body=st.binary(max_size=200), prefix=st.sampled_from([b"", b"SDC\x01"]))
def test_arbitrary_bytes_with_valid_checksums(tiny_fidelity, body, prefix):
    with pytest.raises(EXPECTED):  # no header this short or this random describes a decodable file
        sp.decompress(with_crc(prefix + body), model=str(tiny_fidelity))
