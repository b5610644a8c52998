"""Write the golden .sdc file and its decoded pixels for a released (bundled) model.

Run once per release: `python tests/make_golden.py NAME` (default: the bundled default model).
The test suite then checks, in every later version, that the file still decodes to these pixels
(files must outlive upgrades).
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

GOLDEN = Path(__file__).resolve().parent / "golden"
SOURCE = Path(__file__).resolve().parents[1] / "examples" / "kodim23.png"
BOX = (256, 128, 512, 320)  # a 256x192 crop of the parrots
QUALITY = 40


def main(name: str) -> None:
    import sodec_plugin as sp
    from sodec_plugin import container

    model = sp.load_model(name)
    with Image.open(SOURCE) as im:
        crop = im.convert("RGB").crop(BOX)
    data = sp.compress(crop, model=model, quality=QUALITY)
    stem = f"{model.cfg.name}@{container.model_id_hex(model.digest)}"
    GOLDEN.mkdir(exist_ok=True)
    (GOLDEN / f"{stem}.sdc").write_bytes(data)
    sp.decompress(data, model=model).save(GOLDEN / f"{stem}.png")
    print(f"{stem}: {len(data)} bytes")


if __name__ == "__main__":
    from sodec_plugin.hub import DEFAULT_MODEL

    main(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_MODEL)
