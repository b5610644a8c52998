"""Longer fuzzing of the .sdc decoder than the test suite runs: `python tests/fuzz_sdc.py --cases 20000`.

Mutates real files (bit flips, byte runs, truncations, splices, then usually a recomputed CRC so
the mutation reaches the parser and the entropy decoder) and decodes each in this process: any
exception other than the expected clean ones, or a crash of the process, is a failure.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

from PIL import Image

EXPECTED = (ValueError, OSError, Image.DecompressionBombError)
TILES = (None, 1, 2)  # the decoder's default, and tiles small enough for several bands in every seed


def with_crc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


def mutate(data: bytes, rng: random.Random) -> bytes:
    body = bytearray(data[:-4])
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        if op == 0 and body:
            i = rng.randrange(len(body))
            body[i] ^= 1 << rng.randrange(8)
        elif op == 1 and body:
            i = rng.randrange(len(body))
            body[i:i + rng.randint(1, 8)] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 2:
            body = body[: rng.randrange(len(body) + 1)]
        elif op == 3:
            body += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        else:
            i = rng.randrange(len(body) + 1)
            body[i:i] = bytes([rng.choice([0, 0x7F, 0x80, 0xFF])] * rng.randint(1, 6))
    return with_crc(bytes(body)) if rng.random() < 0.9 else bytes(body)


def fuzz(model: str, seeds: list[bytes], cases: int, seed: int = 0) -> dict[str, int]:
    import sodec_plugin as sp

    rng = random.Random(seed)
    counts = {"cases": 0, "decoded": 0, "rejected": 0, "failures": 0}
    for _ in range(cases):
        data = mutate(rng.choice(seeds), rng)
        counts["cases"] += 1
        try:  # tile 1 streams the fidelity decoder in bands of one latent row: every band path runs
            sp.decompress(data, model=model, tile=rng.choice(TILES))
            counts["decoded"] += 1
        except EXPECTED:
            counts["rejected"] += 1
        except Exception as e:  # noqa: BLE001 - anything else is a finding
            counts["failures"] += 1
            print(f"FAILURE {type(e).__name__}: {e}\n  input: {data.hex()}", file=sys.stderr)
    return counts


def seed_files(model: str) -> list[bytes]:
    import numpy as np

    import sodec_plugin as sp

    rng = np.random.default_rng(0)
    out = []
    for size, mode in (((33, 17), "RGB"), ((64, 64), "RGBA"), ((70, 5), "L"), ((128, 96), "LA"), ((20, 150), "RGB")):
        arr = rng.integers(0, 256, (size[1], size[0], len(mode)), dtype=np.uint8)
        im = Image.fromarray(arr[:, :, 0] if mode == "L" else arr, mode)
        out.append(sp.compress(im, model=model, quality=rng.integers(1, 101), icc_profile=b"icc" * 3))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--cases", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=None, help="model folder (default: a tiny random model)")
    args = p.parse_args()
    model = args.model
    if model is None:
        from sodec_plugin.testing import save_tiny_model

        model = str(save_tiny_model(Path(tempfile.mkdtemp()) / "tiny", diffusion=False))
    t0 = time.time()
    counts = fuzz(model, seed_files(model), args.cases, args.seed)
    print(f"{counts} in {time.time() - t0:.1f} s")
    return 1 if counts["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
