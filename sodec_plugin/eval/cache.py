"""What `sodec eval` computed before: baseline encodes and metric scores, in one SQLite file.

An evaluation of a new model rate-matches every baseline to the new model's points; most of those
searches land on qualities some earlier evaluation already encoded and scored. Encodes are keyed by
the image's pixels, the codec, its quality and settings and the Pillow version; scores by the metric
and the pixels of the two images scored. So a re-run, or another model's evaluation on the same
photos, neither encodes nor scores twice. Safe to share between threads.
"""

from __future__ import annotations

import hashlib
import math
import os
import sqlite3
import threading
from pathlib import Path

import numpy as np


def default_cache_path() -> Path:
    """$SODEC_EVAL_CACHE, else the user's cache folder (XDG_CACHE_HOME, ~/.cache): shared by all evaluations."""
    env = os.environ.get("SODEC_EVAL_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "sodec" / "eval-cache.sqlite"


def digest(a: np.ndarray) -> str:
    """sha256 of an array's shape, dtype and bytes."""
    a = np.ascontiguousarray(a)
    return hashlib.sha256(f"{a.shape}{a.dtype}".encode() + a.tobytes()).hexdigest()


class EvalCache:
    """Scores and encodes on disk at `path`; None keeps them in memory for this process only."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path) if self.path else ":memory:", check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock, self._db:
            self._db.execute("CREATE TABLE IF NOT EXISTS scores (metric TEXT, ref TEXT, dec TEXT, value REAL, "
                             "PRIMARY KEY (metric, ref, dec))")
            self._db.execute("CREATE TABLE IF NOT EXISTS encodes (key TEXT PRIMARY KEY, data BLOB, enc_s REAL)")
        self.hits = {"scores": 0, "encodes": 0}
        self.misses = {"scores": 0, "encodes": 0}

    def _get(self, table: str, sql: str, args: tuple) -> tuple | None:
        with self._lock:
            row = self._db.execute(sql, args).fetchone()
        (self.misses if row is None else self.hits)[table] += 1
        return row

    def score(self, metric: str, ref: str, dec: str) -> float | None:
        row = self._get("scores", "SELECT value FROM scores WHERE metric=? AND ref=? AND dec=?", (metric, ref, dec))
        if row is None:
            return None
        return math.nan if row[0] is None else float(row[0])  # SQLite stores NaN as NULL

    def put_score(self, metric: str, ref: str, dec: str, value: float) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?)", (metric, ref, dec, value))

    def encode(self, key: str) -> tuple[bytes, float] | None:
        row = self._get("encodes", "SELECT data, enc_s FROM encodes WHERE key=?", (key,))
        return None if row is None else (bytes(row[0]), float(row[1]))

    def put_encode(self, key: str, data: bytes, enc_s: float) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO encodes VALUES (?, ?, ?)", (key, data, enc_s))

    def summary(self) -> str:
        return ", ".join(f"{t}: {self.misses[t]} computed, {self.hits[t]} from the cache" for t in self.hits)

    def close(self) -> None:
        self._db.close()
