"""The ComfyUI process as this pack reads it: ComfyUI's modules, when the process has loaded them (ComfyUI
always has before it loads node packs; they are never imported here), and its folders: input, output, temp
and models/sodec. Outside ComfyUI the folders fall back to ones under the working directory and the temp dir.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

MODEL_FOLDER = "sodec"  # ComfyUI's models/sodec


def comfy_module(name: str) -> Any:
    """A ComfyUI module if ComfyUI has loaded it (never imported here: importing comfy.model_management
    outside ComfyUI would parse its command line and probe devices)."""
    return sys.modules.get(name)


def folder_paths() -> Any:
    """ComfyUI's folder_paths module, or None outside ComfyUI."""
    fp = comfy_module("folder_paths")
    return fp if fp is not None and hasattr(fp, "get_output_directory") else None


def register_model_folder() -> None:
    """Make models/sodec a ComfyUI model folder (kept alongside paths from extra_model_paths.yaml)."""
    fp = folder_paths()
    if fp is None:
        return
    path = os.path.join(fp.models_dir, MODEL_FOLDER)
    if MODEL_FOLDER in fp.folder_names_and_paths:
        paths, exts = fp.folder_names_and_paths[MODEL_FOLDER]
        if path not in paths:
            paths.append(path)
        fp.folder_names_and_paths[MODEL_FOLDER] = (paths, set(exts) | {".safetensors", ".json"})
    else:
        fp.folder_names_and_paths[MODEL_FOLDER] = ([path], {".safetensors", ".json"})
    os.makedirs(path, exist_ok=True)


def model_roots() -> list[Path]:
    fp = folder_paths()
    if fp is None or MODEL_FOLDER not in fp.folder_names_and_paths:
        return []
    return [Path(p) for p in fp.get_folder_paths(MODEL_FOLDER)]


def input_directory() -> Path:
    fp = folder_paths()
    return Path(fp.get_input_directory()) if fp is not None else Path.cwd() / "input"


def output_directory() -> Path:
    fp = folder_paths()
    return Path(fp.get_output_directory()) if fp is not None else Path.cwd() / "output"


def temp_directory() -> Path:
    fp = folder_paths()
    return Path(fp.get_temp_directory()) if fp is not None else Path(tempfile.gettempdir()) / "sodec-comfyui"
