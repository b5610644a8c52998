"""The entropy-coding boundary: the only code that calls compressai's rANS coder.

compressai's ``RansDecoder`` does not bounds-check its input: a short or hostile stream makes it
read past the buffer (a segfault was measured on an empty main stream), and its bypass mode can
loop for as long as the stream says. Two rules make reading past the end impossible:

1. Every CDF handed to the coder ends in a zero-width overflow slot, so the decoder can never
   enter bypass mode; the encoder clamps symbols into the table's range instead (the tables
   cover the model's distribution up to a tail mass of 1e-9, so clamping is practically never hit).
2. Without bypass, decoding reads two 32-bit words at init and at most one per symbol, so the
   stream is zero-padded to ``4 * (2 + n_symbols)`` bytes before decoding: whatever the bytes say,
   every read lands inside the buffer.

The tables are integer arrays computed once when a model is saved and stored in its weights, so
files decode the same on every machine (no float CDF evaluation at load time).

Coding needs only compressai's compiled rANS module, `compressai.ans`, which is loaded from its file
without running compressai's package import (which imports its datasets and torch_geometric: seconds
of a fresh process's first decode). Training-side parts of compressai come through `compressai_module`.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

PRECISION = 16
DECODE_CHUNK = 1 << 18  # symbols per call into the rANS coder
RANS_MODULE = "compressai.ans"
_RANS_LOCK = threading.Lock()
_rans: ModuleType | None = None


def compressai_module(name: str) -> ModuleType:
    """A module of compressai's (training-side: entropy models, bound ops, CDF quantisation), imported
    with one warning silenced: compressai's import of torch_geometric calls `torch.jit.script`, which
    torch >= 2.10 flags as deprecated; nobody using this codec can act on it."""
    if name in sys.modules:
        return sys.modules[name]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)
        return importlib.import_module(name)


def rans() -> ModuleType:
    """compressai's rANS extension (RansEncoder, RansDecoder), without compressai's package import.

    The extension is created from its file under its own name, as compressai's import would create it:
    CPython keeps a single-phase extension's module per (file, name), so a later `import compressai`
    gets a module of the same classes instead of initialising the extension twice (which pybind11
    refuses: under any other name, that import would fail). The entry CPython puts in sys.modules is
    removed again, so that `compressai` and its submodules are left for compressai's own import."""
    global _rans
    if _rans is not None:
        return _rans
    with _RANS_LOCK:
        if _rans is None:
            _rans = sys.modules.get(RANS_MODULE) or _load_rans()
    return _rans


def _load_rans() -> ModuleType:
    package = importlib.util.find_spec(RANS_MODULE.partition(".")[0])
    folders = list(package.submodule_search_locations or []) if package else []
    files = [Path(f) / ("ans" + suffix) for f in folders for suffix in importlib.machinery.EXTENSION_SUFFIXES]
    path = next((f for f in files if f.is_file()), None)
    if path is None:  # an unusual install: compressai's own import finds it
        return compressai_module(RANS_MODULE)
    loader = importlib.machinery.ExtensionFileLoader(RANS_MODULE, str(path))
    spec = importlib.util.spec_from_file_location(RANS_MODULE, path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    if sys.modules.get(RANS_MODULE) is module:
        del sys.modules[RANS_MODULE]
    return module


class EntropyError(ValueError):
    """A stream that cannot be decoded with the given tables."""


@dataclass(frozen=True)
class CodingTable:
    """Quantized CDFs: row i is used for symbols whose index is i; values are offset + k."""

    cdf: np.ndarray  # int32 (n, max_len); each row 0 ... 2**16, 2**16 (zero-width overflow slot)
    length: np.ndarray  # int32 (n,): pmf length + 2
    offset: np.ndarray  # int32 (n,)

    def __post_init__(self) -> None:
        n = self.cdf.shape[0]
        if self.length.shape != (n,) or self.offset.shape != (n,):
            raise EntropyError("coding table arrays disagree in size")
        if (self.length < 3).any() or (self.length > self.cdf.shape[1]).any():
            raise EntropyError("coding table lengths out of range")
        rows = np.arange(self.cdf.shape[1])[None, :] < self.length[:, None]
        c = np.where(rows, self.cdf, np.iinfo(np.int32).max)
        if (c[:, 0] != 0).any() or (np.diff(c, axis=1)[:, :-1] < 0).any():
            raise EntropyError("coding table CDFs are not monotone from 0")
        last = self.cdf[np.arange(n), self.length - 1]
        before = self.cdf[np.arange(n), self.length - 2]
        if (last != 1 << PRECISION).any() or (before != 1 << PRECISION).any():
            raise EntropyError("coding table CDFs must end with a zero-width overflow slot")

    @property
    def lists(self) -> tuple[list[list[int]], list[int], list[int]]:
        cached = self.__dict__.get("_lists")
        if cached is None:
            cached = (self.cdf.tolist(), self.length.tolist(), self.offset.tolist())
            object.__setattr__(self, "_lists", cached)
        return cached

    @classmethod
    def from_pmfs(cls, pmfs: list[np.ndarray], offsets: list[int]) -> CodingTable:
        """Quantize each pmf (tail dropped, renormalised) to a CDF with every symbol's freq >= 1."""
        pmf_to_quantized_cdf = compressai_module("compressai._CXX").pmf_to_quantized_cdf
        rows = []
        for p in pmfs:
            p = np.asarray(p, dtype=np.float64)
            p = p / p.sum()
            rows.append(pmf_to_quantized_cdf(p.tolist(), PRECISION) + [1 << PRECISION])
        width = max(len(r) for r in rows)
        cdf = np.zeros((len(rows), width), dtype=np.int32)
        for i, r in enumerate(rows):
            cdf[i, : len(r)] = r
        length = np.array([len(r) for r in rows], dtype=np.int32)
        return cls(cdf, length, np.asarray(offsets, dtype=np.int32))

    def clamp(self, symbols: np.ndarray, indexes: np.ndarray) -> np.ndarray:
        """Clamp symbols into the coded range of their row (never the overflow slot)."""
        lo = self.offset[indexes]
        hi = lo + self.length[indexes] - 3
        return np.clip(symbols, lo, hi)


def gaussian_pmfs(scale_table: np.ndarray, tail_mass: float) -> tuple[list[np.ndarray], list[int]]:
    """Discretised zero-mean Gaussians, one per scale, over +-ceil(scale * q) (q: tail quantile)."""
    from statistics import NormalDist

    q = -NormalDist().inv_cdf(tail_mass / 2)
    std = NormalDist()
    pmfs, offsets = [], []
    for s in scale_table:
        c = int(np.ceil(s * q))
        k = np.arange(-c, c + 1, dtype=np.float64)
        upper = np.array([std.cdf(v) for v in (k + 0.5) / s])
        lower = np.array([std.cdf(v) for v in (k - 0.5) / s])
        pmfs.append(np.maximum(upper - lower, 0.0))
        offsets.append(-c)
    return pmfs, offsets


def build_indexes(scales: np.ndarray, scale_table: np.ndarray) -> np.ndarray:
    """Row of the scale table for each scale: compressai's rule (count of table[:-1] < scale)."""
    out = np.empty(scales.shape, dtype=np.int32)
    plane = int(np.prod(scales.shape[-2:])) if scales.ndim >= 2 else scales.size
    flat, dst = scales.reshape(-1, max(plane, 1)), out.reshape(-1, max(plane, 1))
    for i in range(len(flat)):  # plane by plane: searchsorted's int64 result stays small
        dst[i] = np.searchsorted(scale_table[:-1], flat[i], side="left")
    return out


def encode(symbols: np.ndarray, indexes: np.ndarray, table: CodingTable) -> bytes:
    """One stream of len(indexes) symbols, each clamped into its row's range. Handed to the coder
    DECODE_CHUNK symbols at a time (its buffered encoder writes the bytes its one-call encoder
    writes), so the Python lists it takes stay bounded however large the image."""
    indexes, symbols = indexes.reshape(-1), symbols.reshape(-1)
    cdf, length, offset = table.lists
    encoder = rans().BufferedRansEncoder()
    for start in range(0, indexes.size, DECODE_CHUNK):
        idx = indexes[start:start + DECODE_CHUNK].astype(np.int32)
        sym = table.clamp(symbols[start:start + DECODE_CHUNK].astype(np.int64), idx).astype(np.int32)
        encoder.encode_with_indexes(sym.tolist(), idx.tolist(), cdf, length, offset)
    return encoder.flush()


class StreamDecoder:
    """Reads one stream in successive parts (a context model's passes); `total` symbols at most.

    The stream is zero-padded once for all of them, so reads stay inside the buffer whatever the
    bytes say, and the Python lists compressai takes and returns stay bounded (DECODE_CHUNK
    symbols per call) however large the image.
    """

    def __init__(self, data: bytes, total: int, table: CodingTable) -> None:
        needed = 4 * (2 + total)
        if len(data) > needed + 8:
            raise EntropyError("stream is longer than its symbols can use")
        padded = bytes(data) + bytes(needed - len(data) + 8) if len(data) < needed + 8 else bytes(data)
        self.table = table
        self.left = total
        self._decoder = rans().RansDecoder()
        self._decoder.set_stream(padded)

    def read(self, indexes: np.ndarray) -> np.ndarray:
        """The next len(indexes) symbols, shaped like `indexes`."""
        shape = indexes.shape
        indexes = indexes.reshape(-1).astype(np.int32)
        if indexes.size > self.left:
            raise EntropyError("more symbols read than the stream was sized for")
        if indexes.size and (indexes.min() < 0 or indexes.max() >= self.table.cdf.shape[0]):
            raise EntropyError("entropy index out of range")
        self.left -= indexes.size
        cdf, length, offset = self.table.lists
        out = np.empty(indexes.size, dtype=np.int32)
        for start in range(0, indexes.size, DECODE_CHUNK):
            part = indexes[start:start + DECODE_CHUNK].tolist()
            out[start:start + len(part)] = self._decoder.decode_stream(part, cdf, length, offset)
        return out.reshape(shape)


def decode(data: bytes, indexes: np.ndarray, table: CodingTable) -> np.ndarray:
    """Decode len(indexes) symbols (flat); reads stay inside a zero-padded copy of `data`."""
    return StreamDecoder(data, indexes.size, table).read(indexes.reshape(-1))
