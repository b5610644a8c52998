"""SODEC nodes for ComfyUI: SODECModelLoader, SODECEncode, SODECDecode, SODECSave and SODECLoad.

ComfyUI loads this package from custom_nodes/. Where ComfyUI has the V3 node API (`comfy_api.latest`) the
package offers `comfy_entrypoint`; on older ComfyUI it offers the classic NODE_CLASS_MAPPINGS instead (never
both: ComfyUI would take the V1 mappings and ignore the entrypoint). SODEC_COMFY_API=v1 forces the fallback.

WEB_DIRECTORY is the pack's front-end extension (web/sodec.js), which shows on each node the text it returned
(sizes, bits per pixel, the decoder that ran and why); ComfyUI serves it to the browser.

Importing registers models/sodec as a model folder, .sdc as an image type (so Load Image lists .sdc files)
and, when pillow_codec is installed, the .sdc format with Pillow (so Load Image can open them). torch and the
networks are imported only when a node runs.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import sys

_log = logging.getLogger("sodec.comfyui")

try:  # a repository copied into custom_nodes/ without `pip install`: its root holds sodec_plugin
    import sodec_plugin  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sodec_plugin import container  # noqa: E402

from . import paths  # noqa: E402

try:
    import pillow_codec  # noqa: F401  (registers .sdc with Pillow)
except ImportError as _e:
    _log.info("SODEC: pillow_codec not available (%s); Load Image will not open .sdc files", _e)

mimetypes.add_type(container.MIME, container.EXTENSION)
paths.register_model_folder()

# Absolute: ComfyUI joins it to the folder it loaded, the repository root or this package's own folder.
WEB_DIRECTORY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web")


def _has_v3_api() -> bool:
    """V3 only inside a ComfyUI that has it: outside ComfyUI (tests, scripts) importing comfy_api would
    parse this process's command line, so the V1 classes, which need nothing from ComfyUI, are offered."""
    if os.environ.get("SODEC_COMFY_API", "").lower() == "v1":
        return False
    if "comfy_api.latest" in sys.modules:
        return True
    if "folder_paths" not in sys.modules:
        return False
    try:
        from comfy_api.latest import ComfyExtension, io  # noqa: F401
    except Exception:  # an older ComfyUI, with no or a partial V3 API
        return False
    return True


if _has_v3_api():
    from .nodes_v3 import comfy_entrypoint

    __all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
    _api = "V3 node API (comfy_entrypoint)"
else:
    from .nodes_v1 import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

    __all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
    _api = "V1 node API (NODE_CLASS_MAPPINGS)"
if "folder_paths" in sys.modules:
    _log.info("SODEC nodes: %s", _api)
