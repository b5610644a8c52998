"""A convolutional decoder run over full-width bands of rows, each layer keeping the few rows of its
input that the next band still needs, so that nothing is computed twice and memory is bounded by
the band, not the image.

Square tiles with a halo recompute the halo (1.78x the arithmetic of D_a at 64-cell tiles with an
8-cell overlap) and approximate the untiled result; streamed rows compute every output once and
give the untiled result up to float rounding (the sums of a transposed convolution that straddle
two bands are added in another order).

Each stage takes the next rows of its input and returns the rows of its output that are now final;
`last` says that no input rows follow (the bottom edge's zero padding is applied then).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ResBlock


class Stage(Protocol):
    def push(self, x: torch.Tensor, last: bool) -> torch.Tensor:
        """The next rows of the input -> the output rows that no later input row can change."""


def _rows(like: torch.Tensor, channels: int, rows: int, width: int) -> torch.Tensor:
    """Zeros (N, channels, rows, width) like `like`, channels_last: the layout every stream keeps
    (oneDNN's fast one on the CPU); a tensor of a few rows (or none) has no layout of its own."""
    return like.new_zeros((like.shape[0], channels, rows, width)).contiguous(memory_format=torch.channels_last)


def _cat_rows(parts: list[torch.Tensor]) -> torch.Tensor:
    nonempty = [p for p in parts if p.shape[2]]
    if len(nonempty) == 1:
        return nonempty[0]
    return torch.cat([p.contiguous(memory_format=torch.channels_last) for p in nonempty or parts[-1:]], dim=2)


class Pointwise:
    """A layer that maps each pixel alone (GDN, an activation): rows in, the same rows out."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.fn = fn

    def push(self, x: torch.Tensor, last: bool) -> torch.Tensor:
        return self.fn(x) if x.shape[2] else x


class RowConv:
    """A stride-1 convolution with 'same' padding (k x k, k odd): each output row waits for the k // 2
    input rows below it, which the next band brings (or the bottom padding, at the last one)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        self.weight, self.bias = weight, bias
        self.k = weight.shape[-1]
        self.pending: torch.Tensor | None = None  # input rows (with the top padding) not yet used up

    def push(self, x: torch.Tensor, last: bool) -> torch.Tensor:
        p, (_, c, _, w) = self.k // 2, x.shape
        parts = [self.pending if self.pending is not None else _rows(x, c, p, w), x]
        if last:
            parts.append(_rows(x, c, p, w))
        buf = _cat_rows(parts)
        if buf.shape[2] < self.k:
            self.pending = buf
            return _rows(x, self.weight.shape[0], 0, w)
        out = F.conv2d(buf, self.weight, self.bias, padding=(0, p))
        self.pending = buf[:, :, buf.shape[2] - (self.k - 1):]
        return out


class RowTransposedConv:
    """ConvTranspose2d(k=5, stride=2, padding=2, output_padding=1) (a 2x upsampling): each band's
    transposed convolution is added to the three output rows it shares with the band before
    (overlap-add), so no input row is used twice."""

    def __init__(self, conv: nn.ConvTranspose2d) -> None:
        self.weight, self.bias = conv.weight, conv.bias
        self.row = 0  # global index of the next input row
        self.carry: torch.Tensor | None = None  # the 3 output rows the next band adds to, less one bias

    def push(self, x: torch.Tensor, last: bool) -> torch.Tensor:
        n = x.shape[2]
        if n == 0 and not last:
            return _rows(x, self.weight.shape[1], 0, 2 * x.shape[3])
        if n:
            # output rows 2 * row - 2 ... 2 * (row + n) + 1 (the padding of 2 cut at the image's ends only)
            y = F.conv_transpose2d(x, self.weight, self.bias, stride=2, padding=(0, 2), output_padding=(0, 1))
            if self.carry is not None:
                y[:, :, :3] += self.carry
        else:  # the last push brings no rows: the carried rows are final
            assert self.carry is not None
            y = self.carry if self.bias is None else self.carry + self.bias.view(1, -1, 1, 1)
        start = 0 if self.row else 2  # the first band's two rows above the image are padding
        out = y[:, :, start:2 * n + (2 if last else 0)]
        if not last:  # rows both bands add to: the bias is in them once already
            carry = y[:, :, 2 * n:2 * n + 3]
            self.carry = carry if self.bias is None else carry - self.bias.view(1, -1, 1, 1)
        self.row += n
        return out


class RowPixelShuffle:
    """A convolution to 4x the channels, then pixel_shuffle(2): the sub-pixel form of a 2x upsampling."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        self.conv = RowConv(weight, bias)

    def push(self, x: torch.Tensor, last: bool) -> torch.Tensor:
        return F.pixel_shuffle(self.conv.push(x, last), 2)


class RowResBlock:
    """x + conv2(silu(conv1(silu(x)))): the sum waits for the residual branch, two rows behind."""

    def __init__(self, block: ResBlock) -> None:
        self.branch = [Pointwise(F.silu), RowConv(block.conv1.weight, block.conv1.bias), Pointwise(F.silu),
                       RowConv(block.conv2.weight, block.conv2.bias)]
        self.skip: torch.Tensor | None = None  # input rows whose sum is not made yet

    def push(self, x: torch.Tensor, last: bool) -> torch.Tensor:
        self.skip = x if self.skip is None else _cat_rows([self.skip, x])
        h = run(self.branch, x, last)
        n = h.shape[2]
        out = h.add_(self.skip[:, :, :n])
        self.skip = self.skip[:, :, n:]
        return out


def stages(layers: Iterable[nn.Module]) -> list[Stage]:
    """The streamed form of a chain of layers: 3x3 convolutions, 5x5 stride-2 transposed ones (as
    sub-pixel convolutions where speed.subpixel_convs patched them), residual blocks, and layers
    that map each pixel alone (GDN, activations)."""
    out: list[Stage] = []
    for layer in layers:
        if isinstance(layer, nn.Sequential):
            out += stages(layer)
        elif isinstance(layer, ResBlock):
            out.append(RowResBlock(layer))
        elif isinstance(layer, nn.ConvTranspose2d):
            from ..speed import subpixel_params

            sub = subpixel_params(layer)
            out.append(RowTransposedConv(layer) if sub is None else RowPixelShuffle(*sub))
        elif isinstance(layer, nn.Conv2d):
            if layer.stride != (1, 1) or layer.padding != (layer.kernel_size[0] // 2,) * 2 or layer.groups != 1:
                raise ValueError(f"cannot stream {layer}")
            out.append(RowConv(layer.weight, layer.bias))
        else:
            out.append(Pointwise(layer))
    return out


def run(chain: list[Stage], x: torch.Tensor, last: bool) -> torch.Tensor:
    for stage in chain:
        x = stage.push(x, last)
    return x


def stream(chain: list[Stage], x: torch.Tensor, band: int) -> Iterator[torch.Tensor]:
    """x (N, C, H, W) through `chain` in bands of `band` rows: the output's rows in order, in parts."""
    h = x.shape[2]
    for top in range(0, h, band):
        yield run(chain, x[:, :, top:top + band], last=top + band >= h)
