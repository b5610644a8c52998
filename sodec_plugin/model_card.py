"""A model's README.md for the Hugging Face Hub: derived from its entry in releases.py (the note) and
the provenance in its weights' `training` metadata, so a card never says what the table does not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .releases import ENTRIES, release_for


def write_model_card(folder: str | Path, model: Any, training: dict[str, Any]) -> None:
    """README.md with the Hub's YAML header, what the model is, and how it was trained."""
    cfg = model.cfg
    base = (f"- Base diffusion model: `{cfg.diffusion.base_model}` (revision {cfg.diffusion.base_revision or 'main'})"
            f"\n- ViT: `{cfg.diffusion.vit_model}`" if cfg.diffusion
            else "- Decoder: fidelity decoder only (no diffusion path)")
    # A release is loaded by its name (bundled or fetched from its Hub home); any other folder by its
    # path (or its Hub id once pushed). A release's or candidate's note says what it is.
    release = release_for(cfg.name)
    ref = cfg.name if release is not None and release.digest == model.digest else str(folder)
    entry = ENTRIES.get(cfg.name)
    about = f"{entry.note}\n\n" if entry is not None and entry.note else ""
    listed = (f"\nThe {len(training['data_list'])} training files are listed in the weights' metadata "
              "(`training.data_list` in model.safetensors).\n" if training.get("data_list") else "")
    text = f"""---
library_name: sodec
tags: [image-compression, sodec, learned-codec]
license: other
---
# {cfg.name}

A SODEC learned image codec model ("Steering One-Step Diffusion Model with Fidelity-Rich Decoder for Fast
Image Compression", Chen et al., AAAI 2026), made with the `sodec_plugin` package.

{about}- Weights sha256: `{model.digest}`
- Rate points (lambda): {list(cfg.rate_lambdas)}
{base}

## Use
```python
import sodec_plugin
model = sodec_plugin.load_model("{ref}")
data = sodec_plugin.compress("photo.png", model=model, quality=50)
image = sodec_plugin.decompress(data, model=model)
```

## Training
```json
{json.dumps({k: v for k, v in training.items() if k != "data_list"}, indent=2, sort_keys=True, default=str)}
```
{listed}"""
    Path(folder, "README.md").write_text(text)
