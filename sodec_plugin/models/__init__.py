"""The networks: the compression module, the fidelity and diffusion decoders and their layers.

compressai is imported here, before any network needs it, with one warning silenced: its import of
torch_geometric calls `torch.jit.script`, which torch >= 2.10 flags as deprecated. Nobody using this
codec can act on it, and a Pillow plugin must not print a third party's warning on its first decode.
"""

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)
    import compressai  # noqa: F401
