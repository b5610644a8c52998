"""The fidelity guidance module: the fidelity decoder D_a, the frozen ViT F and the projection F_p.

D_a alone is a complete fast decoder (the `fidelity` decode path and the bundled sodec-lite);
in the full model its output x_f also steers the UNet through guidance tokens c_g that take the
place of SD's text embeddings in cross-attention.
"""

from __future__ import annotations

import torch
from compressai.layers import GDN
from torch import nn

from .transform import identity_blocks


def _up(cin: int, cout: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1)


class FidelityDecoder(nn.Module):
    """D_a: y_hat -> x_f in [0, 1] (`blocks` residual blocks on the latent grid, then the mirror
    of E with inverse GDN, with `blocks_1_8` residual blocks after its first upsampling)."""

    def __init__(self, latent: int, widths: tuple[int, int, int], blocks: int = 0, blocks_1_8: int = 0) -> None:
        super().__init__()
        c0, c1, c2 = widths
        self.blocks = identity_blocks(latent, blocks)
        # A separate module rather than layers inside `net`, so that `net`'s keys stay those of
        # the models released without it.
        self.blocks_1_8 = identity_blocks(c0, blocks_1_8)
        self.net = nn.Sequential(_up(latent, c0), GDN(c0, inverse=True), _up(c0, c1), GDN(c1, inverse=True),
                                 _up(c1, c2), GDN(c2, inverse=True), _up(c2, 3))

    def forward(self, y_hat: torch.Tensor) -> torch.Tensor:
        h = y_hat if self.blocks is None else self.blocks(y_hat)
        if self.blocks_1_8 is None:
            h = self.net(h)
        else:
            h = self.net[2:](self.blocks_1_8(self.net[:2](h)))
        return (h + 1.0) * 0.5


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
