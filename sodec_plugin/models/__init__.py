"""The networks: the compression module, the fidelity and diffusion decoders and their layers.

Coding imports no part of compressai but its compiled rANS module (see sodec_plugin.entropy); its
training-side entropy models are built where training or the encoder's latent search asks for them
(CompressionModule), and GDN is the project's own copy with compressai's keys (gdn.py).
"""
