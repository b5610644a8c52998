"""The fidelity guidance of the diffusion path: the frozen ViT F and the projection F_p, which turn
the fidelity decoder's image x_f into guidance tokens c_g that take the place of SD's text
embeddings in cross-attention (the decoder itself is models/fidelity.py).
"""

from __future__ import annotations

import torch
from torch import nn


class GuidanceProjection(nn.Module):
    """F_p: ViT tokens -> `tokens` guidance tokens of width `dim` (learned queries attending to
    the ViT's tokens), so any ViT token count maps to SD's 77 x 1024 prompt shape."""

    def __init__(self, vit_hidden: int, tokens: int, dim: int, heads: int) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(tokens, dim) * dim**-0.5)
        self.kv = nn.Linear(vit_hidden, dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 2), nn.GELU(), nn.Linear(dim * 2, dim))

    def forward(self, vit_tokens: torch.Tensor) -> torch.Tensor:
        kv = self.kv(vit_tokens)
        q = self.queries[None].expand(vit_tokens.shape[0], -1, -1)
        h = q + self.attn(q, kv, kv, need_weights=False)[0]
        return h + self.mlp(self.norm(h))


def load_vit(model_id: str, revision: str | None, class_name: str, **kwargs: object) -> nn.Module:
    """The frozen image encoder F, from transformers (its own repo id and revision)."""
    import transformers

    cls = getattr(transformers, class_name, None)
    if cls is None:
        raise ValueError(f"transformers has no class {class_name!r}")
    vit = cls.from_pretrained(model_id, revision=revision, **kwargs)
    return vit.eval().requires_grad_(False)
