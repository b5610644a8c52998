"""ComfyUI loads this file when the repository sits in custom_nodes/ (cloned there, or installed from
the Comfy Registry); the node pack is comfyui_nodes/. Anywhere else (pytest, pip) it does nothing."""

import sys

if "folder_paths" in sys.modules:  # imported by ComfyUI
    from .comfyui_nodes import *  # noqa: F403
    from .comfyui_nodes import __all__  # noqa: F401
