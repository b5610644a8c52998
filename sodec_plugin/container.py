"""The .sdc file format: one definition, pure Python (Pillow reads headers without torch).

Layout (docs/format.md has the full description)::

    "SDC" version:u8  width-1:varint  height-1:varint  flags:u8  model:4 bytes  rate:u8
    [chunk count:varint, then per chunk: type:u8 length:varint data]   (if flags bit 3)
    z length:varint  z stream  y stream  crc32:u32be (of every byte before it)

flags bits 0-2 are the mode (RGB, L, RGBA, LA); bit 3 says chunks follow; bits 4-6 index the
resampling factor in RESAMPLE_FACTORS (the streams code the image at 1/factor of its size, the decoder
scales it back); bit 7 must be 0.
model is the first 4 bytes of the sha256 of the model's weights. Chunk types below 128 are
critical (an unknown one is an error); 128 and above may be skipped by readers that do not know them.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

MAGIC = b"SDC"
VERSION = 1
EXTENSION = ".sdc"
MIME = "image/x-sodec"
# Image files the doors read (CLI batches, training folders, evaluation folders).
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".gif",
                              ".avif"})
MODES = ("RGB", "L", "RGBA", "LA")
MAX_DIMENSION = 1 << 24
MODEL_ID_BYTES = 4
MODEL_ID_HEX_DIGITS = 2 * MODEL_ID_BYTES  # the model id in hex, as names and messages show it
MAX_CHUNKS = 64
# Resampling factors a file may name (flags bits 4-6 hold the index into this tuple; the first four
# were written as log2 of the factor in bits 4-5, which the index equals): the streams then code an
# image of ceil(width / factor) x ceil(height / factor), which the decoder scales back up (codec.py).
RESAMPLE_FACTORS = (1, 2, 4, 8, 1.5)
MAX_CHUNK_BYTES = (1 << 32) - 1


def coded_size(width: int, height: int, factor: float) -> tuple[int, int]:
    """(width, height) of the image the streams code at resampling `factor`, in exact arithmetic
    (1.5 codes ceil(2 * width / 3))."""
    num, den = float(factor).as_integer_ratio()
    return -(-width * den // num), -(-height * den // num)


def model_id_hex(digest: str) -> str:
    """The model id a file stores for weights with this sha256 (hex): its first MODEL_ID_BYTES bytes."""
    return digest[:MODEL_ID_HEX_DIGITS]


def check_pixels(width: int, height: int, *, warn: bool = True) -> None:
    """Pillow's decompression-bomb rule, the one home of it here: above Image.MAX_IMAGE_PIXELS a
    warning, above twice that an error, before anything is allocated. `warn=False` where Pillow's
    own open already warned."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    if limit is None:
        return
    pixels = width * height
    if pixels > 2 * limit:
        raise Image.DecompressionBombError(
            f"Image size ({pixels} pixels) exceeds limit of {2 * limit} pixels, could be decompression bomb DOS "
            "attack.")
    if pixels > limit and warn:
        import warnings

        warnings.warn(f"Image size ({pixels} pixels) exceeds limit of {limit} pixels, could be decompression bomb DOS "
                      "attack.", Image.DecompressionBombWarning, stacklevel=3)


class FormatError(ValueError):
    """Bytes that are not a valid .sdc file (wrong magic, truncated, corrupt, hostile)."""


class TruncatedError(FormatError):
    """A length runs past the bytes given: more of the file may make them parse (a header
    read from a prefix of the file), unlike every other FormatError."""


class Chunk:
    ICC = 1
    EXIF = 2
    XMP = 3
    ALPHA = 4  # the alpha plane, losslessly coded as a grayscale PNG of the image size
    MODEL_NAME = 5  # utf-8 name of the model, written when it is not a released model
    CRITICAL_LIMIT = 128
    NAMES = {ICC: "icc_profile", EXIF: "exif", XMP: "xmp", ALPHA: "alpha", MODEL_NAME: "model_name"}


@dataclass
class SDCFile:
    width: int
    height: int
    mode: str
    model_id: bytes
    rate_position: int
    z_stream: bytes = b""
    y_stream: bytes = b""
    chunks: dict[int, bytes] = field(default_factory=dict)
    file_size: int = 0
    resample: float = 1

    @property
    def coded_size(self) -> tuple[int, int]:
        """(width, height) of the image the streams code: the image's size over the resampling factor."""
        return coded_size(self.width, self.height, self.resample)

    @property
    def model_hex(self) -> str:
        return self.model_id.hex()

    @property
    def bits_per_pixel(self) -> float:
        return 8.0 * self.file_size / (self.width * self.height)

    @property
    def model_name(self) -> str | None:
        raw = self.chunks.get(Chunk.MODEL_NAME)
        return raw.decode("utf-8", "replace") if raw is not None else None

    def chunk(self, kind: int) -> bytes | None:
        return self.chunks.get(kind)


def _varint(n: int) -> bytes:
    if n < 0:
        raise ValueError("varint must be non-negative")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


class _Reader:
    def __init__(self, data: bytes, end: int) -> None:
        self.data, self.pos, self.end = data, 0, end

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise TruncatedError(f"truncated .sdc file: {what} runs past the end")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def varint(self, what: str, limit: int) -> int:
        n, shift = 0, 0
        for _ in range(5):
            b = self.u8(what)
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                if n > limit:
                    raise FormatError(f"{what} {n} exceeds the limit {limit}")
                return n
            shift += 7
        raise FormatError(f"{what} is not a valid varint")


def pack(f: SDCFile) -> bytes:
    """Serialize; the CRC32 trailer covers every byte before it."""
    if f.mode not in MODES:
        raise ValueError(f"mode {f.mode!r} is not one of {MODES}")
    if not (1 <= f.width <= MAX_DIMENSION and 1 <= f.height <= MAX_DIMENSION):
        raise ValueError(f"size {f.width}x{f.height} outside 1..{MAX_DIMENSION}")
    if len(f.model_id) != MODEL_ID_BYTES or not 0 <= f.rate_position <= 255:
        raise ValueError("model id must be 4 bytes and rate position 0..255")
    if f.resample not in RESAMPLE_FACTORS:
        raise ValueError(f"resampling factor {f.resample} is not one of {RESAMPLE_FACTORS}")
    if len(f.chunks) > MAX_CHUNKS:
        raise ValueError(f"{len(f.chunks)} chunks; a file holds at most {MAX_CHUNKS}")
    for kind, body in f.chunks.items():
        if not 0 <= kind <= 255 or (kind < Chunk.CRITICAL_LIMIT and kind not in Chunk.NAMES):
            raise ValueError(f"chunk type {kind} is not a known critical type (< {Chunk.CRITICAL_LIMIT}) "
                             "or an ancillary one (up to 255)")
        if len(body) > MAX_CHUNK_BYTES:
            raise ValueError(f"chunk {kind} is {len(body)} bytes; at most {MAX_CHUNK_BYTES}")
    flags = MODES.index(f.mode) | (0x08 if f.chunks else 0) | RESAMPLE_FACTORS.index(f.resample) << 4
    out = bytearray(MAGIC)
    out += bytes([VERSION]) + _varint(f.width - 1) + _varint(f.height - 1) + bytes([flags])
    out += f.model_id + bytes([f.rate_position])
    if f.chunks:
        out += _varint(len(f.chunks))
        for kind in sorted(f.chunks):
            out += bytes([kind]) + _varint(len(f.chunks[kind])) + f.chunks[kind]
    out += _varint(len(f.z_stream)) + f.z_stream + f.y_stream
    out += struct.pack(">I", zlib.crc32(out))
    return bytes(out)


def accept(prefix: bytes) -> bool:
    """Pillow's _accept: the magic and a version this reader knows."""
    return prefix[:3] == MAGIC and (len(prefix) < 4 or prefix[3] == VERSION)


def parse(data: bytes, *, verify: bool = True, header_only: bool = False) -> SDCFile:
    """Parse and validate. Every length is checked against the file before it is used; with
    `verify` the checksum is checked first, so no stream of a damaged file reaches a decoder."""
    data = bytes(data)
    if len(data) < 4 or data[:3] != MAGIC:
        raise FormatError("not an .sdc file (bad magic)")
    if data[3] != VERSION:
        raise FormatError(f"unsupported .sdc version {data[3]} (this reader knows version {VERSION})")
    end = len(data) - 4
    if end < 4:
        raise FormatError("truncated .sdc file")
    if verify and not header_only and struct.unpack(">I", data[end:])[0] != zlib.crc32(data[:end]):
        raise FormatError("corrupt .sdc file: checksum mismatch")
    r = _Reader(data, len(data) if header_only else end)
    r.pos = 4
    width = r.varint("width", MAX_DIMENSION - 1) + 1
    height = r.varint("height", MAX_DIMENSION - 1) + 1
    flags = r.u8("flags")
    if flags & 0x80 or (flags & 0x07) >= len(MODES) or (flags >> 4 & 0x07) >= len(RESAMPLE_FACTORS):
        raise FormatError(f"invalid flags byte 0x{flags:02x}")
    model_id = r.take(MODEL_ID_BYTES, "model id")
    rate = r.u8("rate position")
    chunks: dict[int, bytes] = {}
    if flags & 0x08:
        count = r.varint("chunk count", MAX_CHUNKS)
        for _ in range(count):
            kind = r.u8("chunk type")
            length = r.varint("chunk length", MAX_CHUNK_BYTES)
            body = r.take(length, "chunk")
            if kind in chunks:
                raise FormatError(f"duplicate chunk type {kind}")
            if kind < Chunk.CRITICAL_LIMIT and kind not in Chunk.NAMES:
                raise FormatError(f"unknown critical chunk type {kind}")
            if kind in Chunk.NAMES:
                chunks[kind] = body
    f = SDCFile(width, height, MODES[flags & 0x07], model_id, rate, chunks=chunks, file_size=len(data),
                resample=RESAMPLE_FACTORS[flags >> 4 & 0x07])
    if header_only:
        return f
    z_len = r.varint("z stream length", r.end - r.pos)
    f.z_stream = r.take(z_len, "z stream")
    f.y_stream = r.take(r.end - r.pos, "y stream")
    return f
