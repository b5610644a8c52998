"""GDN and inverse GDN (Balle et al., "Density modeling of images using a generalized normalization
transformation", 2016) with compressai's parameters, initial values and state-dict keys.

The project's own copy so that coding never imports compressai, whose package import alone (it
imports its datasets and torch_geometric) costs a fresh process seconds before its first decode.
The forward is compressai's, operation for operation; where a gradient is wanted, the lower bound of
the reparametrisation takes compressai's own straight-through rule, so training is unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..entropy import compressai_module

REPARAM_OFFSET = 2.0**-18


class LowerBound(nn.Module):
    """max(x, bound), with compressai's gradient (LowerBoundFunction) when one is wanted."""

    def __init__(self, bound: float) -> None:
        super().__init__()
        self.register_buffer("bound", torch.Tensor([float(bound)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return compressai_module("compressai.ops.bound_ops").LowerBoundFunction.apply(x, self.bound)
        return torch.max(x, self.bound)


class NonNegativeParametrizer(nn.Module):
    """x -> max(x, bound)^2 - pedestal: keeps GDN's beta and gamma non-negative."""

    def __init__(self, minimum: float = 0.0, reparam_offset: float = REPARAM_OFFSET) -> None:
        super().__init__()
        self.register_buffer("pedestal", torch.Tensor([reparam_offset**2]))
        self.lower_bound = LowerBound((minimum + reparam_offset**2) ** 0.5)

    def init(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(torch.max(x + self.pedestal, self.pedestal))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lower_bound(x) ** 2 - self.pedestal


class GDN(nn.Module):
    """y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2) (times the root when `inverse`)."""

    def __init__(self, in_channels: int, inverse: bool = False, beta_min: float = 1e-6,
                 gamma_init: float = 0.1) -> None:
        super().__init__()
        self.inverse = bool(inverse)
        self.beta_reparam = NonNegativeParametrizer(minimum=float(beta_min))
        self.beta = nn.Parameter(self.beta_reparam.init(torch.ones(in_channels)))
        self.gamma_reparam = NonNegativeParametrizer()
        self.gamma = nn.Parameter(self.gamma_reparam.init(float(gamma_init) * torch.eye(in_channels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        beta = self.beta_reparam(self.beta)
        gamma = self.gamma_reparam(self.gamma).reshape(c, c, 1, 1)
        norm = F.conv2d(x**2, gamma, beta)
        norm = torch.sqrt(norm) if self.inverse else torch.rsqrt(norm)
        return x * norm
