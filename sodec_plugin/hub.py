"""Where weights come from: the bundled model, a local folder, or a Hub repo id.

Hub repos are resolved through huggingface_hub (its cache, `revision`, HF_HUB_OFFLINE and
local_files_only honoured). A model folder holds config.json and model.safetensors; nothing is
ever unpickled.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from .config import CONFIG_NAME, WEIGHTS_NAME

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
# The newest release is the default; earlier ones stay bundled so that their files decode.
DEFAULT_MODEL = "sodec-lite-11"


class ModelNotFoundError(FileNotFoundError):
    """A model name that is neither bundled, nor a folder, nor a resolvable Hub repo."""


@functools.lru_cache(maxsize=4)
def _scan_bundled(weights_dir: Path) -> tuple[tuple[str, Path, str], ...]:
    """(name, folder, weights sha256) of each release under `weights_dir`; package data does not
    change while a process runs, and every compress/decompress asks, so the folder is read once."""
    if not weights_dir.is_dir():
        return ()
    out = []
    for p in sorted(weights_dir.iterdir()):
        if (p / CONFIG_NAME).is_file():
            out.append((p.name, p, json.loads((p / CONFIG_NAME).read_text()).get("weights_sha256", "")))
    return tuple(out)


def bundled_models() -> dict[str, Path]:
    """Released models shipped in the package: name -> folder (every release stays decodable)."""
    return {name: folder for name, folder, _ in _scan_bundled(WEIGHTS_DIR)}


def known_model_ids() -> dict[str, str]:
    """First 8 hex digits of each bundled model's weights digest -> its name (for error messages
    and for picking the right released model when a file names it)."""
    return {digest[:8]: name for name, _, digest in _scan_bundled(WEIGHTS_DIR) if digest}


def default_model_name() -> str:
    models = bundled_models()
    if DEFAULT_MODEL in models:
        return DEFAULT_MODEL
    raise ModelNotFoundError(
        f"the bundled default model {DEFAULT_MODEL!r} is not installed (its weights are missing from "
        f"{WEIGHTS_DIR}); pass a model folder or Hub repo id, or make a tiny random one for plumbing checks with "
        "sodec_plugin.testing.save_tiny_model(path)")


def resolve_folder(name_or_path: str | Path | None, revision: str | None = None,
                   local_files_only: bool | None = None) -> Path:
    """A local folder holding config.json + model.safetensors for a name, path or repo id."""
    if name_or_path is None:
        name_or_path = default_model_name()
    s = str(name_or_path)
    bundled = bundled_models()
    if s in bundled:
        return bundled[s]
    p = Path(s).expanduser()
    if p.is_dir():
        if not (p / CONFIG_NAME).is_file():
            raise ModelNotFoundError(f"{p} is a folder but holds no {CONFIG_NAME}")
        return p
    if p.exists() or s.startswith((".", "/", "~")) or s.count("/") != 1:
        raise ModelNotFoundError(f"no SODEC model at {s!r}: not a bundled model ({', '.join(bundled) or 'none'}), "
                                 "not a folder, not a Hub repo id (org/name)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    kwargs: dict[str, Any] = {"revision": revision, "allow_patterns": [CONFIG_NAME, WEIGHTS_NAME, "README.md"]}
    if local_files_only is not None:
        kwargs["local_files_only"] = local_files_only
    try:
        return Path(snapshot_download(s, **kwargs))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as e:
        raise ModelNotFoundError(f"could not get SODEC model {s!r} (revision {revision or 'main'}) from the Hugging "
                                 f"Face Hub or its cache: {e}") from e


def push_to_hub(folder: str | Path, repo_id: str, *, private: bool = False, token: str | None = None,
                commit_message: str = "Upload SODEC model") -> str:
    """Publish a saved model folder (config.json, model.safetensors, README.md); returns the URL."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} holds no {name}: save_pretrained() first")
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message=commit_message,
                             allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, "README.md"])
    return str(getattr(info, "commit_url", info))


def write_model_card(folder: str | Path, model: Any, training: dict[str, Any]) -> None:
    """README.md with the Hub's YAML header, what the model is, and how it was trained."""
    cfg = model.cfg
    base = (f"- Base diffusion model: `{cfg.diffusion.base_model}` (revision {cfg.diffusion.base_revision or 'main'})"
            f"\n- ViT: `{cfg.diffusion.vit_model}`" if cfg.diffusion
            else "- Decoder: fidelity decoder only (no diffusion path)")
    # A bundled release is loaded by its name; any other folder by its path (or its Hub id once pushed).
    ref = cfg.name if Path(folder).resolve().parent == WEIGHTS_DIR else str(folder)
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

- Weights sha256: `{model.digest}`
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
{json.dumps({k: v for k, v in training.items() if k != "data_list"}, indent=2, default=str)}
```
{listed}"""
    Path(folder, "README.md").write_text(text)
