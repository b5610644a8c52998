"""The .sdc container: round trips, overhead, and every kind of damage rejected cleanly."""

from __future__ import annotations

import struct
import zlib

import pytest

from sodec_plugin import container
from sodec_plugin.container import Chunk, FormatError, SDCFile


def sample(**kw) -> SDCFile:
    base = dict(width=768, height=512, mode="RGB", model_id=b"\x12\x34\x56\x78", rate_position=40,
                z_stream=b"z" * 90, y_stream=b"y" * 1400)
    base.update(kw)
    return SDCFile(**base)


def test_round_trip_with_chunks():
    f = sample(mode="RGBA", chunks={Chunk.ICC: b"icc", Chunk.EXIF: b"Exif\0\0MM", Chunk.XMP: b"<x/>",
                                    Chunk.ALPHA: b"png", Chunk.MODEL_NAME: b"m@1"})
    g = container.parse(container.pack(f))
    assert (g.width, g.height, g.mode, g.model_id, g.rate_position) == (768, 512, "RGBA", f.model_id, 40)
    assert (g.z_stream, g.y_stream, g.chunks) == (f.z_stream, f.y_stream, f.chunks)
    assert g.model_name == "m@1"


def test_overhead_of_plain_rgb_is_at_most_24_bytes():
    f = sample()
    data = container.pack(f)
    assert len(data) - len(f.z_stream) - len(f.y_stream) <= 24


@pytest.mark.parametrize("size", [(1, 1), (127, 128), (16384, 3), (1 << 24, 1)])
def test_sizes(size):
    g = container.parse(container.pack(sample(width=size[0], height=size[1])))
    assert (g.width, g.height) == size


def test_header_only_needs_no_checksum():
    data = container.pack(sample())
    h = container.parse(data[:20], header_only=True)
    assert (h.width, h.height, h.mode) == (768, 512, "RGB")


def test_every_truncation_is_a_format_error():
    data = container.pack(sample(chunks={Chunk.ICC: b"i" * 50}))
    for n in range(len(data)):
        with pytest.raises(FormatError):
            container.parse(data[:n])


def test_every_bit_flip_is_detected():
    data = bytearray(container.pack(sample(z_stream=b"z" * 5, y_stream=b"y" * 20)))
    for i in range(len(data)):
        for bit in (0, 7):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            with pytest.raises(FormatError):
                container.parse(bytes(bad))


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


@pytest.mark.parametrize("body, message", [
    (b"XYZ\x01", "magic"),
    (b"SDC\x09" + bytes(20), "version"),
    (b"SDC\x01\xff\xff\xff\xff\xff\x00", "varint"),
    (b"SDC\x01\x00\x00\x7f" + bytes(6), "flags"),
    (b"SDC\x01\x00\x00\x08" + bytes(5) + b"\x01\x07\x01x", "critical chunk"),
    (b"SDC\x01\x00\x00\x08" + bytes(5) + b"\x01\x01\x7f", "chunk runs past the end"),
    (b"SDC\x01\x00\x00\x00" + bytes(5) + b"\x7f", "z stream length .* exceeds"),
])
def test_hostile_headers_with_valid_checksums(body, message):
    with pytest.raises(FormatError, match=message):
        container.parse(_with_crc(body))


def test_unknown_ancillary_chunk_is_skipped():
    body = b"SDC\x01\x00\x00\x08" + bytes(5) + b"\x01\x90\x02ab" + b"\x00"
    f = container.parse(_with_crc(body))
    assert f.chunks == {} and f.z_stream == b"" and f.y_stream == b""


def test_accept():
    assert container.accept(b"SDC\x01rest")
    assert not container.accept(b"\x89PNG")
    assert not container.accept(b"SDC\x02")


def test_pack_refuses_what_parse_would_reject():
    base = dict(width=8, height=8, mode="RGB", model_id=b"abcd", rate_position=0, z_stream=b"z", y_stream=b"y")
    with pytest.raises(ValueError, match="not a known critical type"):
        container.pack(container.SDCFile(**base, chunks={6: b"x"}))
    with pytest.raises(ValueError, match="at most 64"):
        container.pack(container.SDCFile(**base, chunks={k: b"x" for k in range(128, 200)}))
    ok = container.pack(container.SDCFile(**base, chunks={200: b"ancillary"}))
    assert container.parse(ok).z_stream == b"z"


def test_header_prefix_too_short_is_truncated_not_corrupt():
    data = container.pack(container.SDCFile(8, 8, "RGB", b"abcd", 0, b"z", b"y", chunks={3: b"x" * 300}))
    with pytest.raises(container.TruncatedError):
        container.parse(data[:40], verify=False, header_only=True)
    bad = bytearray(data)
    bad[6] = 0xFF
    with pytest.raises(container.FormatError) as e:
        container.parse(bytes(bad[:40]), verify=False, header_only=True)
    assert not isinstance(e.value, container.TruncatedError)


def test_the_model_id_is_the_first_model_id_bytes_of_the_digest_in_hex():
    digest = "0123456789abcdef" * 4  # a sha256 in hex
    assert bytes.fromhex(container.model_id_hex(digest)) == bytes.fromhex(digest)[:container.MODEL_ID_BYTES]
    assert len(container.model_id_hex(digest)) == container.MODEL_ID_HEX_DIGITS
