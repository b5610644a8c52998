"""Where weights come from: the bundled default, a released name (from its Hub home), a local
folder, or a Hub repo id.

Hub repos are resolved through huggingface_hub (its cache, `revision`, HF_HUB_OFFLINE and
local_files_only honoured). A model folder holds config.json and model.safetensors; nothing is
ever unpickled. Which releases exist and where each is published is `releases.RELEASES`.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from .config import CONFIG_NAME, WEIGHTS_NAME
from .container import model_id_hex
from .releases import BY_MODEL_ID, DEFAULT_MODEL, Release, download_command, release_for

__all__ = ["DEFAULT_MODEL", "WEIGHTS_DIR", "ModelNotFoundError", "bundled_models", "default_model_name",
           "fetch_release", "is_model_folder", "known_model_ids", "push_to_hub", "resolve_folder"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
# Files the Hub repo of a model holds; nothing else is fetched or published.
REPO_FILES = [CONFIG_NAME, WEIGHTS_NAME, "README.md"]


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
    """Models shipped in the package (the default): name -> folder. Earlier releases come from the Hub."""
    return {name: folder for name, folder, _ in _scan_bundled(WEIGHTS_DIR)}


def known_model_ids() -> dict[str, str]:
    """Each released model's id (container.model_id_hex of its weights digest) -> its name (for error messages
    and for picking the right released model when a file names it)."""
    return {model_id: r.name for model_id, r in BY_MODEL_ID.items()}


def default_model_name() -> str:
    models = bundled_models()
    if DEFAULT_MODEL in models:
        return DEFAULT_MODEL
    raise ModelNotFoundError(
        f"the bundled default model {DEFAULT_MODEL!r} is not installed (its weights are missing from "
        f"{WEIGHTS_DIR}); pass a model folder or Hub repo id, or make a tiny random one for plumbing checks with "
        "sodec_plugin.testing.save_tiny_model(path)")


def is_model_folder(path: str | Path) -> bool:
    """A SODEC model folder: model.safetensors and a config.json with the keys every SODEC config has
    (so that another tool's model folder in the same place is not taken for one)."""
    folder = Path(path)
    if not ((folder / CONFIG_NAME).is_file() and (folder / WEIGHTS_NAME).is_file()):
        return False
    try:
        data = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"latent_channels", "rate_lambdas"} <= data.keys()


def resolve_folder(name_or_path: str | Path | None, revision: str | None = None,
                   local_files_only: bool | None = None) -> Path:
    """A local folder holding config.json + model.safetensors for a name, path or repo id."""
    if name_or_path is None:
        name_or_path = default_model_name()
    s = str(name_or_path)
    bundled = bundled_models()
    if s in bundled:
        return bundled[s]
    release = release_for(s)
    if release is not None:
        return fetch_release(release, local_files_only=local_files_only)
    p = Path(s).expanduser()
    if p.is_dir():
        if not (p / CONFIG_NAME).is_file():
            raise ModelNotFoundError(f"{p} is a folder but holds no {CONFIG_NAME}")
        return p
    if p.exists() or s.startswith((".", "/", "~")) or s.count("/") != 1:
        raise ModelNotFoundError(f"no SODEC model at {s!r}: not a bundled model ({', '.join(bundled) or 'none'}), "
                                 "not a released name, not a folder, not a Hub repo id (org/name)")
    try:
        return _snapshot(s, revision, local_files_only)
    except _hub_errors() as e:
        raise ModelNotFoundError(f"could not get SODEC model {s!r} (revision {revision or 'main'}) from the Hugging "
                                 f"Face Hub or its cache: {e}") from e


def _hub_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    return LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError


def _snapshot(repo_id: str, revision: str | None, local_files_only: bool | None) -> Path:
    from huggingface_hub import snapshot_download

    kwargs: dict[str, Any] = {"revision": revision, "allow_patterns": REPO_FILES}
    if local_files_only is not None:
        kwargs["local_files_only"] = local_files_only
    return Path(snapshot_download(repo_id, **kwargs))


def fetch_release(release: Release, local_files_only: bool | None = None) -> Path:
    """The folder of a released model from its Hub home (through the local cache), checked to be
    exactly that release: a repo or tag that was changed later cannot change what a file decodes to."""
    try:
        try:  # the cache first: a release's tag never moves, so a cached copy needs no request to the Hub
            folder = _snapshot(release.repo_id, release.revision, True)
        except _hub_errors():
            if local_files_only:
                raise
            folder = _snapshot(release.repo_id, release.revision, local_files_only)
    except _hub_errors() as e:
        from huggingface_hub import constants

        why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "local_files_only" if local_files_only \
            else f"{type(e).__name__}: {e}"
        raise ModelNotFoundError(
            f"SODEC model {release.identity} is not installed: it is published on the Hugging Face Hub as "
            f"{release.repo_id} (revision {release.revision}), is not in the local cache, and could not be "
            f"downloaded now ({why}). Download it once, online, with: {download_command(release)}") from e
    try:
        digest = json.loads((folder / CONFIG_NAME).read_text()).get("weights_sha256", "")
    except (OSError, ValueError) as e:
        raise ModelNotFoundError(f"{release.repo_id} (revision {release.revision}) has no readable {CONFIG_NAME}: "
                                 f"{e}") from e
    if digest != release.digest:
        raise ModelNotFoundError(f"{release.repo_id} (revision {release.revision}) holds weights "
                                 f"{model_id_hex(digest) or '?'}, not {release.identity}: refusing to decode with "
                                 "other weights")
    return folder


def push_target(folder: str | Path, repo_id: str | None = None) -> tuple[str, str | None, Release | None]:
    """(repo id, tag, release) a model folder is published under. A release goes exactly where the
    release table says, so that files naming it find it; any other model needs a repo id."""
    folder = Path(folder)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} holds no {name}: save_pretrained() first")
    raw = json.loads((folder / CONFIG_NAME).read_text())
    name, digest = str(raw.get("name", "")), str(raw.get("weights_sha256", ""))
    release = BY_MODEL_ID.get(model_id_hex(digest))
    if release is not None and release.digest == digest:
        if repo_id not in (None, release.repo_id):
            raise ValueError(f"{release.identity} is a release: it is published as {release.repo_id} only "
                             f"(sodec_plugin/releases.py), not as {repo_id}")
        return release.repo_id, release.revision, release
    if release_for(name) is not None:
        raise ValueError(f"{folder} is named {name!r}, a release, but holds other weights ({model_id_hex(digest)}); "
                         "rename it or add it to the release table first (docs/releasing.md)")
    if repo_id is None:
        raise ValueError(f"{name or folder} is not a release: give the Hub repo id to publish it under")
    return repo_id, None, None


def push_to_hub(folder: str | Path, repo_id: str | None = None, *, private: bool = False, token: str | None = None,
                commit_message: str = "Upload SODEC model") -> str:
    """Publish a saved model folder (config.json, model.safetensors, README.md); returns the URL.
    A release is published under its table entry and tagged with its revision."""
    from huggingface_hub import HfApi

    repo_id, tag, release = push_target(folder, repo_id)
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message=commit_message,
                             allow_patterns=REPO_FILES)
    if tag is not None:
        commit = getattr(info, "oid", None)
        api.create_tag(repo_id, tag=tag, revision=commit, tag_message=f"{release.identity if release else tag}",
                       exist_ok=True)
    return str(getattr(info, "commit_url", info))
